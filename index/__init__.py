"""Build a searchable clip index from a folder of videos.

Front door: `storyreel.index.build(video_dir, index_dir, ...)` writes an index;
`storyreel.index.open_index(index_dir)` reads the last committed one;
`storyreel.index.export_parquet(index_dir, out_dir)` writes it as parquet + FAISS (clip-retrieval layout).
Stages (clip-retrieval style):
reader (scan) → mapper (decode, shots, embed, motion; locally or on Ray, index/ray_engine.py) → writer
(DuckDB catalog + float16 frame-vector segments + FAISS, work proportional to the change).
Heavy libraries load on first use.
"""

from storyreel.index.build import BuildReport, build
from storyreel.index.catalog import ClipRow
from storyreel.index.export import export_parquet
from storyreel.index.reader import Index, open_index

__all__ = ["build", "BuildReport", "open_index", "Index", "ClipRow", "export_parquet"]
