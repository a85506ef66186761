"""Build a searchable clip index from a folder of videos.

Front door: `storyreel.index.build(video_dir, index_dir, BuildSettings(...))` writes an index;
`storyreel.index.open_index(index_dir)` reads the last committed one;
`storyreel.index.export_parquet(index_dir, out_dir)` writes it as parquet + FAISS (clip-retrieval layout).
Stages (clip-retrieval style, composed by index/runner.py):
reader (index/scan.py) → mapper (index/mapper.py: decode, shots, embed, motion; or on Ray,
index/ray_engine.py) → writer (index/writer.py: DuckDB catalog + float16 frame-vector segments + FAISS,
work proportional to the change); the values between them are in index/records.py.
Heavy libraries load on first use.
"""

from storyreel.index.catalog import ClipRow
from storyreel.index.export import export_parquet
from storyreel.index.reader import Index, open_index
from storyreel.index.records import BuildReport, BuildSettings
from storyreel.index.runner import build

__all__ = ["build", "BuildSettings", "BuildReport", "open_index", "Index", "ClipRow", "export_parquet"]
