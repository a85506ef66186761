"""Synthetic videos with known cuts and camera motion (tests, benchmarks, demo). STUB (owned by `signals`)."""
