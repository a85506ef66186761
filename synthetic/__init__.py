"""Synthetic data with known truths, made in code: the demo's video corpus and the benchmarks' vectors.

    make_corpus("videos/", seed=0)                  # textured scenes with pans, tilts, zooms, static shots, cuts
    write_video("pan.mp4", [Shot("pan-right", frames=24, scene_seed=3)])
    vectors = clustered_vectors(100_000, 512, centres=4_000, seed=0)
"""

from storyreel.synthetic.corpus import (
    SHOT_KINDS,
    Shot,
    clustered_vectors,
    make_corpus,
    scene_image,
    text_like_queries,
    write_long_video,
    write_video,
)

__all__ = ["SHOT_KINDS", "Shot", "scene_image", "write_video", "make_corpus", "clustered_vectors",
           "text_like_queries", "write_long_video"]
