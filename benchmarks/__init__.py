"""Latency, accuracy and the accuracy-vs-latency report of every artifact (see benchmarks/README.md)."""
