"""An index as the files clip-retrieval and autofaiss users read (`storyreel index export --format parquet`).

    export_parquet("my_index", "my_index_export")

OUT_DIR gets, for the last published generation of the index:

    metadata/metadata_0.parquet  one row per clip (the `index ls --json` fields), ordered by clip_id
    img_emb/img_emb_0.parquet    clip_id and `embedding` (FLOAT[dim]: a fixed-size list of float32), same order
    image.index                  the FAISS index itself; its ids are the clip ids
    index_infos.json             model id, dimension, index type and search parameters, clip count

The embeddings are the clip vectors the index searches (mean-pooled, L2-normalized CLIP frame
vectors; inner product = cosine), computed from the stored frame vectors, exact for every index
type. A vector index that does not hold exactly the catalog's clips as its file stands (a scan
index keeps removed clips as tombstones and scores the newest beside it, index/vectors.py) is
written rebuilt from them, so that image.index answers with the catalog's clip ids only.
Everything is read through the public reader (index/reader.py), never from the storage files directly.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.index.catalog import ClipRow

FORMATS = ("parquet",)
MARKER = "index_infos.json"  # an existing OUT_DIR holding it is a previous export and may be replaced


def export_parquet(index_dir, out_dir) -> dict:
    """Write the clip-retrieval/autofaiss layout (module doc) into `out_dir`; returns a summary dict."""
    import faiss

    from storyreel.index.reader import open_index, vector_ids
    from storyreel.index.vectors import build_vector_index, search_params

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MARKER).is_file())):
        raise UserError(f"--out {out_dir} exists and is not an empty folder or an earlier export; "
                        f"choose a new folder")
    if not out_dir.parent.is_dir():
        raise UserError(f"--out {out_dir}: folder {out_dir.parent} does not exist")
    with open_index(index_dir) as index:
        rows = index.clips()
        ids = np.array([row.clip_id for row in rows], dtype=np.int64)
        vectors = index.clip_vectors(ids)
        live = set(vector_ids(index.vector_index).tolist()) - set(index.tombstones.tolist())
        if live | set(index.added[0].tolist()) != set(ids.tolist()):
            raise UserError(f"index {index.path}: catalog and vector ids disagree; run `storyreel index verify`")
        infos = {"format": "storyreel index export/1", "index": str(index.path), "model_id": index.model_id,
                 "dim": int(index.dim), "index_type": index.index_type,
                 "search_params": search_params(index.vector_index), "clips": len(rows),
                 "metric": "inner_product", "faiss_ids": "clip_id"}
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "metadata").mkdir(parents=True)
        (tmp / "img_emb").mkdir()
        _write_metadata(rows, tmp / "metadata" / "metadata_0.parquet")
        _write_embeddings(ids, vectors, tmp / "img_emb" / "img_emb_0.parquet")
        vector_index = index.vector_index
        if len(index.tombstones) or len(index.added[0]):
            vector_index, _ = build_vector_index(ids, vectors, spec=index.index_type)
        faiss.write_index(vector_index, str(tmp / "image.index"))
        (tmp / MARKER).write_text(json.dumps(infos, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.rename(tmp, out_dir)
    return {"out": str(out_dir), **infos}


def _write_metadata(rows: list[ClipRow], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f.name for f in fields(ClipRow)]
    table = pa.table({name: [getattr(row, name) for row in rows] for name in names})
    pq.write_table(table, path)


def _write_embeddings(ids: np.ndarray, vectors: np.ndarray, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    embedding = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    pq.write_table(pa.table({"clip_id": pa.array(ids, type=pa.int64()), "embedding": embedding}), path)
