"""storyreel: retrieval-augmented storytelling video.

One namespace, four stages that depend on each other in one direction only:

    storyreel.index       a folder of videos -> a searchable clip index (DuckDB catalog + FAISS)
    storyreel.retrieval   text or image -> ranked clips, filtered by camera motion
    storyreel.depth       MiDaS-style depth of a clip, stable across frames
    storyreel.generation  depth-guided video diffusion with personalized characters, and stories

plus `storyreel.core` (what every stage shares: errors, atomic files, progress, video and image
I/O, the model registry in `storyreel.core.models`) and `storyreel.testing` (synthetic corpora and
tiny model builders for tests, benchmarks and the demo). `storyreel.cli` is the console script.
"""

__version__ = "0.1.0"
