"""Workflows that compose twiki's stages (the monthly snapshot, benchmarks)."""
