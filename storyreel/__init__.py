"""storyreel: retrieval-augmented storytelling video.

`storyreel.X` lives in the top-level folder `X/`. The layers depend one way (tests/test_layers.py):

    core                   errors, atomic files, progress, video and image I/O, the model presets
    synthetic              videos and vectors with known truths (the demo's corpus, benchmarks)
    index                  a folder of videos -> a searchable clip index (DuckDB catalog + FAISS)
    retrieval              text or image -> ranked clips, filtered by camera motion
    depth                  MiDaS-style depth of a clip, stable across frames
    generation             depth-guided video diffusion with personalized characters (diffusers)
    training               character packs (TimeInv tokens + LoRA)
    story                  story files, planning, rendering a whole story, the demo
    ui, cli                the web app and the `storyreel` command, over the same Python API

`storyreel.testing` holds helpers the tests and benchmarks share.
"""

__version__ = "0.1.0"
