"""``python -m engine.cli``: the ``thoughtscope`` command."""

import sys

from engine.cli import main

sys.exit(main())
