"""Benchmarks and the synthetic city they run on (see bench/README.md)."""
