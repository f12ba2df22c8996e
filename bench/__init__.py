"""Benchmarks (`make bench-*`): measured on a fresh local stack, recorded in bench/results.md."""
