"""Simulated multi-socket GPU machines for CPU-only CI (see fakes/README.md)."""
