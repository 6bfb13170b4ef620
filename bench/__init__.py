"""Benchmarks (`make bench` = `python -m bench.run`): performance goals live here, not in tests."""
