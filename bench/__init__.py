"""Benchmarks, run on demand (`python -m bench.<name>`); results are written under bench/results/."""
