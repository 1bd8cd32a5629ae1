"""Benchmarks: Ember against TorchServe 0.12 in the same run (``make bench``; see README.md here)."""
