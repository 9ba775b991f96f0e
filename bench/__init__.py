"""Benchmarks (``make bench``): figures to read, not tests that pass or fail."""
