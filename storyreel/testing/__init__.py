"""Test, benchmark and demo helpers; never needed by production code paths except the `tiny` preset.

synthetic (videos with known cuts and camera motion, clustered vectors), tiny (the tiny preset's
generator, built in code), models (bench-only full-size random-init builders), fake_index (the one
in-memory index tests use, held to the real one's interface), slow_build (a build that pauses after
each video, for kill tests), probes (call counters tests put on models).
"""
