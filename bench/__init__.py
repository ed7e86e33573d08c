"""The performance benchmark: `python bench/run.py` (see bench/run.py and the README)."""
