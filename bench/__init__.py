"""Benchmarks (`make bench`): each script measures against a baseline run on the same machine."""
