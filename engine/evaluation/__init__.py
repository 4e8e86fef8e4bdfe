"""Measuring methods: accuracy on held-out, fresh or the user's own problems (evaluate.py,
datasets.py), LECO's step checks (leco.py), the sampler sweep (sweep.py) and the speed bench
(bench.py). Each module says what it measures; the CLI (engine/cli/) prints it."""
