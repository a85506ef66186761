"""Scores for generated clips: CLIP-T, CLIP-I, temporal consistency, reported with motion magnitude.

* CLIP-T (Animate-A-Story's "Sem"): mean over frames of cos(CLIP text, CLIP frame); the prompt's
  character tokens are replaced by their init words first (CLIP does not know "<teddy>"), as in the
  personalization literature.
* CLIP-I (Animate-A-Story's "ID"): mean over frames and concept images of cos(CLIP frame, CLIP concept
  image); the concept images are the thumbnails stored in the character pack.
* Temporal consistency: mean cosine of adjacent frames' CLIP embeddings. A still clip scores ~1, so
  the clip's camera-motion magnitude is always reported beside it.

The metric math takes embeddings (any embedder: `storyreel.index.embed.load_clip(preset)` in practice), so it
can be checked with hand-made vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storyreel.core.errors import UserError


@dataclass
class ClipScores:
    clip_t: float
    clip_i: float | None  # None without concept images
    temporal_consistency: float
    motion_magnitude: float  # mean flow, pixels per frame at the motion analyser's width
    frames: int
    prompt: str  # the text CLIP saw (tokens replaced by init words)
    model_id: str


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)


def clip_text_score(frame_embeddings: np.ndarray, text_embedding: np.ndarray) -> float:
    """Mean over frames of cos(frame, text); frame_embeddings (F, D), text_embedding (D,)."""
    return float((_unit(frame_embeddings) @ _unit(text_embedding).reshape(-1)).mean())


def clip_image_score(frame_embeddings: np.ndarray, concept_embeddings: np.ndarray) -> float:
    """Mean over frames and concept images of cos(frame, concept); (F, D) and (N, D)."""
    return float((_unit(frame_embeddings) @ _unit(concept_embeddings).T).mean())


def temporal_consistency(frame_embeddings: np.ndarray) -> float:
    """Mean cosine of adjacent frames; needs at least two frames."""
    frames = _unit(frame_embeddings)
    if len(frames) < 2:
        raise UserError("temporal consistency needs a clip of at least 2 frames")
    return float((frames[1:] * frames[:-1]).sum(axis=1).mean())


def prompt_for_clip(prompt: str, packs) -> str:
    """Replace each pack's token by its init word: '<teddy> on a beach' -> 'bear on a beach'."""
    for pack in packs:
        prompt = prompt.replace(pack.token, pack.init_word)
    return prompt


def score_clip(frames: np.ndarray, prompt: str, embedder, packs=()) -> ClipScores:
    """All scores of one clip: `frames` uint8 (F, H, W, 3), `packs` the CharacterPacks it used."""
    from storyreel.index.motion import camera_motion

    frame_embeddings = embedder.embed_images(frames)
    text = prompt_for_clip(prompt, packs)
    concepts = [p.concept_images.numpy() for p in packs if p.concept_images is not None]
    clip_i = clip_image_score(frame_embeddings, embedder.embed_images(np.concatenate(concepts))) if concepts else None
    return ClipScores(
        clip_t=clip_text_score(frame_embeddings, embedder.embed_text([text])[0]),
        clip_i=clip_i,
        temporal_consistency=temporal_consistency(frame_embeddings),
        motion_magnitude=float(camera_motion(frames).magnitude),
        frames=len(frames),
        prompt=text,
        model_id=embedder.model_id,
    )


def read_clip_frames(path: str | Path) -> np.ndarray:
    """uint8 (F, H, W, 3) of a clip: a video file, a gif or a folder of PNG frames (the core reader,
    core/video.py read_video), or a one-line UserError."""
    from storyreel.core.video import BadVideo, read_video

    path = Path(path)
    if not path.exists():
        raise UserError(f"clip {path} does not exist")
    try:
        return read_video(path)
    except BadVideo as err:
        raise UserError(f"cannot read clip {path}: {err}") from None
