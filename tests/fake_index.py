"""An index held in memory, for tests: `MemoryIndex` satisfies `storyreel.index.reader.ClipIndex`.

It is the one stand-in for an opened index in the test suite. tests/test_index_interface.py checks it
against the `ClipIndex` protocol and the real `Index` (same members, same signatures), and the
vector search and frame-range checks are the real `Index`'s own code, so a test that passes against
it exercises the same contract as a real index:

    index = MemoryIndex([clip_row(1, motion="pan-left"), clip_row(2)], frame_vectors={1: ..., 2: ...})
    hits = search(index, text="q", embedder=FakeEmbedder({"q": vector}))

`FakeEmbedder` stands in for the CLIP query model (`model_id`, `dim`, `embed_text`, `embed_images`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError
from storyreel.index.catalog import ClipFilter, ClipRow
from storyreel.index.reader import Index, clip_vector, frame_offsets

DIM = 16
MODEL_ID = "fake-clip"


def clip_row(clip_id: int, motion: str = "static", seconds: float = 2.0, *, video: str | None = None,
             start_frame: int = 0, fps: float = 24.0, size=(160, 90), fingerprint: str = "fp") -> ClipRow:
    """A catalog row as the builder writes it: `seconds` long at `fps`, starting at `start_frame`."""
    end_frame = start_frame + int(round(fps * seconds))
    return ClipRow(clip_id, video or f"/videos/v{clip_id}.mp4", start_frame, end_frame, start_frame / fps,
                   end_frame / fps, fps, size[0], size[1], motion, 1.0, fingerprint)


def fill_value(clip_id: int) -> int:
    """The pixel value of every frame `MemoryIndex` makes up for a clip without video pixels."""
    return (clip_id * 37) % 256


class MemoryIndex:
    """`ClipIndex` over in-memory clip rows, per-frame vectors and pixels, with a real FAISS index.

    rows: the catalog (`ClipRow`s). frame_vectors: {clip_id: (K, dim)} per-frame CLIP vectors (default:
    seeded random unit vectors); the clip vector in FAISS is their normalized mean, as the builder
    stores it. videos: {row.video: (N, H, W, 3) uint8} source pixels that `read_frames` cuts clips from
    (absolute frame numbers, like the real decoder); a clip whose video is not given reads frames of
    its size filled with `fill_value(clip_id)`. A re-indexed video is a new `MemoryIndex` at the same
    `path` (a new index generation), not a changed one.

    `fetched` lists the `n` of every `search_vectors` call (tests check over-fetching with it).
    """

    def __init__(self, rows: list[ClipRow], frame_vectors: dict[int, np.ndarray] | None = None,
                 videos: dict[str, np.ndarray] | None = None, *, path="/memory", model_id: str = MODEL_ID,
                 dim: int = DIM, seed: int = 0, spec: str | None = None):
        from storyreel.index.vectors import build_vector_index

        self.path = Path(path)
        self.model_id, self.dim = model_id, int(dim)
        self._rows = {int(r.clip_id): r for r in rows}
        if len(self._rows) != len(rows):
            raise ValueError("clip ids must be unique")
        if frame_vectors is None:
            rng = np.random.default_rng(seed)
            frame_vectors = {cid: rng.standard_normal((2, self.dim)) for cid in self._rows}
        self._frame_vectors = {int(cid): np.asarray(v, np.float32).reshape(-1, self.dim)
                               for cid, v in frame_vectors.items()}
        if set(self._frame_vectors) != set(self._rows):
            raise ValueError("frame_vectors must have one entry per clip row")
        self._videos = dict(videos or {})
        ids = np.array(sorted(self._rows), dtype=np.int64)
        pooled = self.clip_vectors(ids)
        self.vector_index, self.query_offset = build_vector_index(ids, pooled, spec=spec)  # spec: as the build's
        # what Index.search_vectors reads besides the FAISS index: nothing removed or newer than it
        self.tombstones, self.added = np.zeros(0, np.int64), (ids[:0], pooled[:0])
        self.fetched: list[int] = []

    # --- ClipIndex ---------------------------------------------------------------------------------

    def clips(self) -> list[ClipRow]:
        return [self._rows[cid] for cid in sorted(self._rows)]

    def clip_ids(self) -> set[int]:
        return set(self._rows)

    def clips_by_id(self, clip_ids) -> dict[int, ClipRow]:
        return {int(c): self._rows[int(c)] for c in clip_ids if int(c) in self._rows}

    def clip(self, clip_id: int) -> ClipRow:
        if int(clip_id) not in self._rows:
            raise UserError(f"clip id {clip_id} is not in the index {self.path}")  # the real Index's message
        return self._rows[int(clip_id)]

    def read_frames(self, clip_id: int, indices=None) -> np.ndarray:
        row = self.clip(clip_id)
        rel = frame_offsets(row, indices)  # the real Index's check and message
        if row.video in self._videos:
            return np.ascontiguousarray(self._videos[row.video][rel + row.start_frame])
        return np.full((len(rel), row.height, row.width, 3), fill_value(row.clip_id), np.uint8)

    def frame_vectors(self, clip_ids) -> dict[int, np.ndarray]:
        return {int(c): self._frame_vectors[int(c)] for c in clip_ids if int(c) in self._frame_vectors}

    def search_vectors(self, query: np.ndarray, n: int, where: ClipFilter | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        self.fetched.append(int(n))
        return Index.search_vectors(self, query, n, where)  # the real code, over this index's FAISS vectors

    def _filtered_ids(self, where: ClipFilter) -> np.ndarray:
        return np.array(sorted(cid for cid, row in self._rows.items() if where.matches(row)), dtype=np.int64)

    def clip_vectors(self, clip_ids) -> np.ndarray:
        return np.stack([clip_vector(self._frame_vectors[int(c)]) for c in clip_ids]) if len(clip_ids) else \
            np.zeros((0, self.dim), np.float32)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeEmbedder:
    """CLIP query-model stand-in: a fixed vector per known text (else `default`); an image maps to the
    vector stored under f"image:{its first pixel value}" (see `fill_value`)."""

    def __init__(self, texts: dict[str, np.ndarray], model_id: str = MODEL_ID, dim: int = DIM,
                 default: np.ndarray | None = None):
        self.model_id, self.dim, self.texts, self.default = model_id, dim, texts, default

    def _vector(self, key: str) -> np.ndarray:
        if key not in self.texts and self.default is None:
            raise KeyError(f"FakeEmbedder has no vector for {key!r}")
        return np.asarray(self.texts.get(key, self.default), np.float32)

    def embed_text(self, texts) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts])

    def embed_images(self, images) -> np.ndarray:
        return np.stack([self._vector(f"image:{int(im[0, 0, 0])}") for im in images])
