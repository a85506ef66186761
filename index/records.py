"""The typed values the index build's stages hand each other (see index/runner.py).

`BuildSettings` goes in; the reader (index/scan.py) yields `FileStat`s; the mapper (index/mapper.py)
turns each into a `VideoRecord` of `ClipRecord`s; the writer (index/writer.py) commits those and the
build returns a `BuildReport`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from storyreel.core.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from storyreel.core.models import ModelPreset
    from storyreel.core.video import VideoInfo
    from storyreel.index.scan import FileStat


@dataclass(frozen=True)
class BuildSettings:
    """Everything a build is told. The first six fields decide what the catalog contains: they are
    stored in its meta (`catalog_settings`) and must match to reuse an index. The rest say how this
    build runs and may change from one build to the next."""

    max_clip_s: float = 8.0
    min_clip_s: float = 1.0
    frames_per_clip: int = 8
    shot_short_side: int = 64       # frames for the cut detector (every frame is decoded at this size)
    analysis_short_side: int = 224  # frames for CLIP and motion
    motion_frames: int = 9          # frames handed to camera_motion per clip, ~0.1 s apart

    # A preset name or a ModelPreset whose CLIP embeds; None: $STORYREEL_MODELS, else "default".
    preset: str | ModelPreset | None = None
    workers: int = 1                # decode threads; engine "ray": mapper actors
    engine: str = "local"           # "local" (decode threads + CLIP here) or "ray" (index/ray_engine.py)
    address: str | None = None      # engine "ray": the cluster (None: a local Ray with `workers` CPUs)
    # Let the build drop more than half of the index's videos (or all of them) when they are gone
    # from the video folder; without it such a build stops first (scan.check_removals).
    allow_removals: bool = False
    # Rebuild damaged index files from what is intact (index/repair.py); without it a build over a
    # damaged index stops with one line.
    repair: bool = False
    device: Any = None              # where CLIP runs and in what precision: storyreel.core.devices'
    dtype: Any = None               # defaults (CUDA in fp16 when present) for None

    def catalog_settings(self) -> dict:
        """The fields stored in the catalog's meta, as JSON-ready numbers (8 and 8.0 are one setting)."""
        return {"max_clip_s": float(self.max_clip_s), "min_clip_s": float(self.min_clip_s),
                "frames_per_clip": int(self.frames_per_clip), "shot_short_side": int(self.shot_short_side),
                "analysis_short_side": int(self.analysis_short_side), "motion_frames": int(self.motion_frames)}

    def check(self) -> None:
        """One-line UserErrors, naming the command-line flags, for settings no build can run with."""
        if not (0 < self.min_clip_s <= self.max_clip_s < math.inf) or self.frames_per_clip < 1:
            raise UserError(f"clip lengths must be finite with 0 < --min-seconds ({self.min_clip_s:g}) <= "
                            f"--max-seconds ({self.max_clip_s:g}), and frames_per_clip ({self.frames_per_clip}) "
                            f"at least 1")
        if self.engine not in ("local", "ray"):
            raise UserError(f"unknown --engine {self.engine!r}; choose local or ray")
        if self.address is not None and self.engine != "ray":
            raise UserError("--address names a Ray cluster; use it with --engine ray")


@dataclass
class ClipRecord:
    start_frame: int
    end_frame: int
    frame_indices: np.ndarray           # (K,) absolute indices of the embedded frames
    motion: str
    motion_magnitude: float
    start_s: float = 0.0                # from the frame timestamps (core/video.py frame_times)
    end_s: float = 0.0
    frames: np.ndarray | None = None    # (K,h,w,3) uint8, dropped after embedding
    frame_vectors: np.ndarray | None = None  # (K, dim)
    vector: np.ndarray | None = None          # (dim,) mean-pooled, L2-normalized


@dataclass
class VideoRecord:
    """The mapper's output for one file: clips with vectors, or an error reason."""

    file: FileStat
    fingerprint: str
    info: VideoInfo | None = None
    clips: list[ClipRecord] = field(default_factory=list)
    error: str | None = None
    frames_decoded: int = 0


@dataclass
class BuildReport:
    index: str
    generation: str | None
    videos: int
    new: int
    changed: int
    unchanged: int
    removed: int
    errors: int             # files in the errors table after the build
    clips_added: int
    clips: int              # clips in the index after the build
    frames_decoded: int
    seconds: float
    index_type: str
    index_update: str = ""  # what the build did to the vector index and why (vectors.plan_update)
    notes: list[str] = field(default_factory=list)  # repairs the build made (also printed on stderr)

    def to_dict(self) -> dict:
        return asdict(self)
