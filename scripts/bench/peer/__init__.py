"""A peer for the benchmark: the two hot operations built the way the original system was."""
