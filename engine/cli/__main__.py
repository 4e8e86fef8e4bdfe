"""``python -m engine.cli``: the ``thoughtscope`` command."""

import sys

from engine.cli import main

if __name__ == "__main__":    # a worker process (spawn) imports this module again: it must not run
    sys.exit(main())
