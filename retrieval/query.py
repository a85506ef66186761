"""Text or image → ranked clips of an index.

Pipeline (each step a function below):
1. embed the query with the index's CLIP model (text, or an image);
2. fetch FAISS candidates by mean-pooled clip vector, over-fetching so re-ranking has room;
3. catalog filters (`motion`, `min_seconds`/`max_seconds`, `video`) are applied inside that
   search (an id selector, index/vectors.py `search_among`): k results whenever k clips match;
4. re-rank: score = (1 - FRAME_WEIGHT)·clip similarity + FRAME_WEIGHT·best frame similarity
   (a clip whose single frame matches well beats one that is vaguely similar throughout),
   plus MOTION_BONUS when the query names the clip's camera motion ("pans left", "static shot");
5. keep the top k.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from storyreel.core.errors import UserError
from storyreel.retrieval.motion_words import motion_in_query

if TYPE_CHECKING:
    from storyreel.index import ClipRow

# More results than anyone reads; FAISS allocates k rows per query up front.
MAX_RESULTS = 10_000

CANDIDATES_PER_RESULT = 10  # FAISS over-fetch: k·this candidates (at least MIN_CANDIDATES)
MIN_CANDIDATES = 100
FRAME_WEIGHT = 0.5
MOTION_BONUS = 0.05  # in cosine units: ViT-B/32 text-frame similarities span ~0.15–0.35


@dataclass(frozen=True)
class SearchHit:
    """One result: the clip's catalog row, its final score and 1-based rank."""

    clip: ClipRow
    score: float
    rank: int
    clip_score: float  # cosine of query and mean-pooled clip vector
    frame_score: float  # best cosine of query and one sampled frame
    motion_match: bool  # the query named this clip's camera motion

    def to_dict(self) -> dict:
        return {**self.clip.to_dict(), "score": round(self.score, 6), "rank": self.rank}


def search(index_dir_or_index, text: str | None = None, image=None, k: int = 5, *, preset: str | None = None,
           embedder=None, **filters) -> list[SearchHit]:
    """Best `k` clips for a text query or an image (path, PIL image or uint8 HxWx3 array).

    `filters` are the fields of `ClipFilter` (index/catalog.py): `motion` (camera label), clip length
    `min_seconds`..`max_seconds`, `video` (a source video file, or a folder: clips of the videos under
    it). k hits come back whenever k clips match.

    `embedder` (with `.model_id`, `embed_text`, `embed_images`) saves loading CLIP again;
    otherwise the CLIP the index recorded is loaded (`preset`: that preset's CLIP instead). Its model
    must be the index's model.
    """
    _check_query(text, image, k)
    where = clip_filter(**filters)
    image = load_image(image) if image is not None else None  # a bad image fails before CLIP loads
    if isinstance(index_dir_or_index, (str, os.PathLike)):
        from storyreel.index import open_index

        with open_index(index_dir_or_index) as index:
            return search(index, text, image, k, preset=preset, embedder=embedder, **filters)
    index = index_dir_or_index

    # 1. Embed the query with the index's model.
    if embedder is None:
        from storyreel.index.embed import clip_for_index

        embedder = clip_for_index(index.model_id, preset)
    if embedder.model_id != index.model_id:
        raise UserError(
            f"the index {index.path} was built with model {index.model_id}, but the query model is "
            f"{embedder.model_id}; leave out --models/--clip to use the index's own model"
        )
    query = embed_query(embedder, text=text, image=image)
    # 2.-3. Candidates that pass the filters; 4. re-rank; 5. top k.
    rows = candidates(index, query, k, where)
    wanted_motion = motion_in_query(text) if text is not None else set()
    return rerank(index, query, rows, wanted_motion)[:k]


def _check_query(text: str | None, image, k: int) -> None:
    if (text is None) == (image is None):
        raise UserError("give exactly one query: a TEXT or an --image PATH")
    if text is not None and not text.strip():
        raise UserError("the search TEXT is empty; describe the clip you want")
    if k < 1:
        raise UserError(f"-k must be at least 1 (got {k})")
    if k > MAX_RESULTS:
        raise UserError(f"-k must be at most {MAX_RESULTS} (got {k})")


def clip_filter(motion: str | None = None, min_seconds: float | None = None, max_seconds: float | None = None,
                video: str | None = None):
    """The checked `ClipFilter` of a search's filters (a bad value is one line naming its flag)."""
    from storyreel.index.catalog import ClipFilter
    from storyreel.index.motion import MOTION_LABELS

    if motion is not None and motion not in MOTION_LABELS:
        raise UserError(f"unknown --motion {motion!r}; choose one of {', '.join(MOTION_LABELS)}")
    for name, value in (("--min-seconds", min_seconds), ("--max-seconds", max_seconds)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{name} must be a finite number of seconds, 0 or more (got {value})")
    if min_seconds is not None and max_seconds is not None and max_seconds < min_seconds:
        raise UserError(f"--max-seconds {max_seconds:g} is shorter than --min-seconds {min_seconds:g}")
    return ClipFilter(motion=motion, min_seconds=min_seconds, max_seconds=max_seconds,
                      video=os.path.abspath(video) if video is not None else None)


def embed_query(embedder, text: str | None = None, image=None) -> np.ndarray:
    """(dim,) L2-normalized query vector."""
    if text is not None:
        return np.asarray(embedder.embed_text([text])[0], np.float32)
    return np.asarray(embedder.embed_images(load_image(image)[None])[0], np.float32)


def load_image(image) -> np.ndarray:
    """uint8 (H, W, 3) RGB from a path (EXIF-rotated), a PIL image or an array."""
    from PIL import Image

    from storyreel.core.images import read_rgb

    if isinstance(image, (str, os.PathLike)):
        return read_rgb(image, what="--image")
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    array = np.array(image)  # a writable copy (torch warns about read-only arrays)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise UserError(f"query image must be uint8 RGB (H, W, 3), got {array.dtype} {array.shape}")
    return array


def candidates(index, query: np.ndarray, k: int, where=None) -> list:
    """Catalog rows of the FAISS candidates (over-fetched for re-ranking) among the clips `where` matches."""
    ids, _ = index.search_vectors(query, max(k * CANDIDATES_PER_RESULT, MIN_CANDIDATES), where)
    by_id = index.clips_by_id(ids)
    return [by_id[int(i)] for i in ids if int(i) in by_id]


def rerank(index, query: np.ndarray, rows: list, wanted_motion: set[str]) -> list[SearchHit]:
    """Score every candidate row (module docstring, step 4) and rank them, best first."""
    vectors = index.frame_vectors([r.clip_id for r in rows])
    scored = []
    for row in rows:
        frames = vectors[row.clip_id]  # (K, dim), L2-normalized per frame
        pooled = frames.mean(axis=0)
        clip_score = float(pooled @ query / max(np.linalg.norm(pooled), 1e-12))
        frame_score = float((frames @ query).max())
        motion_match = row.motion in wanted_motion
        score = (1 - FRAME_WEIGHT) * clip_score + FRAME_WEIGHT * frame_score + (MOTION_BONUS if motion_match else 0.0)
        scored.append((score, clip_score, frame_score, motion_match, row))
    scored.sort(key=lambda s: (-s[0], s[4].clip_id))
    return [
        SearchHit(clip=row, score=score, rank=rank, clip_score=cs, frame_score=fs, motion_match=mm)
        for rank, (score, cs, fs, mm, row) in enumerate(scored, start=1)
    ]
