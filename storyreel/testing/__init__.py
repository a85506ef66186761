"""Test, benchmark and demo helpers; never needed by production code paths except the `tiny` preset.

synthetic (videos with known cuts and camera motion, clustered vectors), models (tiny and bench-only
random-init model builders), fake_index (the one in-memory index tests use, held to the real one's
interface), slow_build (a build that pauses after each video, for kill tests).
"""
