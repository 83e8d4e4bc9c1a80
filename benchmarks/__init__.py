"""tort's benchmark: `python benchmarks/bench.py` (or `python -m benchmarks`), one module per mode."""
