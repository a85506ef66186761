"""FAISS vector index chosen by corpus size. STUB (owned by the `signals` helper)."""

from __future__ import annotations

import numpy as np


def choose_index_spec(n: int, dim: int) -> str:
    """FAISS factory string for n vectors of dimension dim (autofaiss rules, REFERENCE.md)."""
    return "Flat"


def build_vector_index(ids: np.ndarray, vectors: np.ndarray):
    """A FAISS inner-product index over L2-normalized float32 `vectors` whose ids are `ids` (int64)."""
    import faiss

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    return index
