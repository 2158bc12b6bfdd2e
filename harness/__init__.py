"""Plain helper modules shared by the tiers and the benchmarks (no fixtures here)."""
