"""Training-free layout control: entity boxes steer where each entity's words act (VideoDirectorGPT
plans, without Layout2Vid's training).

A `Layout` is a plot's entities, each with normalized boxes [x0, y0, x1, y1] at keyframes (frame
index → box, interpolated linearly to every frame, held before the first and after the last), the
words of the prompt that describe it (its character token, or its description phrase), a strength
and an optional guidance scale. Two mechanisms, both attention processors that wrap whatever
processor is installed (plain, LoRA through `attn.to_q/k/v`, Text2Video-Zero's cross-frame one):

* **Masked attention** in Peekaboo's spirit (Jain et al., CVPR 2024), during the first `strength`
  fraction of the steps (step i iff (i + 1) / N ≤ strength, the τ clamp's rule):
  - cross-attention: a pixel inside entity boxes attends to the start token and those entities'
    words; a pixel outside every box to every word but the entities' (conditional half only: the
    negative prompt has no entity words);
  - spatial self-attention: a pixel attends only to pixels of its own region (the top-most box
    holding it, or the background); with cross-frame attention the keys are frame 1's;
  - temporal attention (AnimateDiff's motion modules): a pixel attends only to the frames in which
    the same pixel belongs to the same region, so an entity's region follows its path.
* **Energy guidance** in LLM-grounded Video Diffusion's spirit (Lian et al., ICLR 2024), optional
  (`guidance` > 0) and during the same steps: before the noise prediction, the UNet runs once with
  gradients on the conditional half, the energy Σ_entities (1 − share of its cross-attention mass
  inside its box)² is differentiated with respect to the latent input, and the input moves
  `guidance` times down that gradient.

With strength 0 and no guidance the processors pass every call through unchanged, so frames are
bit-identical to a run without a layout (tests/test_layout.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

BOX_GRID = 0.05  # VideoDirectorGPT's box grid (planners snap to it; hand-written boxes may be finer)
DEFAULT_LAYOUT_STRENGTH = 0.4  # masked fraction of the schedule when a plan sets none (Peekaboo masks early steps)
_STOPWORDS = {"a", "an", "the", "of", "with", "and"}


# ---------------------------------------------------------------------------------------- boxes

def box_problem(box) -> str | None:
    """Why `box` is not a normalized [x0, y0, x1, y1] box with x0 < x1 and y0 < y1 in [0, 1], or None."""
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return f"expected [x0, y0, x1, y1] (four numbers), got {box!r}"
    x0, y0, x1, y1 = box
    outside = [v for v in box if not 0.0 <= v <= 1.0]
    if outside:
        return f"{outside[0]:g} is outside [0, 1] (boxes are fractions of the frame)"
    if x0 >= x1:
        return f"x0 {x0:g} >= x1 {x1:g}"
    if y0 >= y1:
        return f"y0 {y0:g} >= y1 {y1:g}"
    return None


def snap_box(box, grid: float = BOX_GRID) -> tuple[float, float, float, float]:
    """`box` on the `grid`, keeping at least one grid cell in each direction."""
    cells = round(1 / grid)
    x0, y0, x1, y1 = (min(max(round(v * cells), 0), cells) for v in box)
    x0, y0 = min(x0, cells - 1), min(y0, cells - 1)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    return tuple(round(v / cells, 4) for v in (x0, y0, x1, y1))


def interpolate_boxes(keyframes: dict[int, tuple], frames: int) -> np.ndarray:
    """(frames, 4) boxes: linear between keyframes, held before the first and after the last."""
    keys = sorted(keyframes)
    table = np.array([keyframes[k] for k in keys], np.float64)
    return np.stack([np.interp(np.arange(frames), keys, table[:, c]) for c in range(4)], axis=1)


def spread_boxes(count: int) -> list[tuple[float, float, float, float]]:
    """Default boxes for `count` entities in order of mention: side-by-side columns, left to right,
    standing on the lower part of the frame (the rule-based planner's layout)."""
    width = 1.0 / max(count, 1)
    margin = min(0.05, width / 4)
    return [snap_box((k * width + margin, 0.25, (k + 1) * width - margin, 0.95)) for k in range(count)]


# --------------------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class LayoutEntity:
    name: str
    phrase: str  # the prompt's words for it: its character token, or its description
    boxes: dict[int, tuple[float, float, float, float]]  # keyframe -> [x0, y0, x1, y1]

    def to_dict(self) -> dict:
        return {"name": self.name, "phrase": self.phrase,
                "boxes": {str(k): list(v) for k, v in sorted(self.boxes.items())}}


@dataclass(frozen=True)
class Layout:
    entities: tuple[LayoutEntity, ...]
    strength: float = DEFAULT_LAYOUT_STRENGTH  # fraction of the steps with masked attention
    guidance: float = 0.0  # energy-guidance step size (0: off)

    def to_dict(self) -> dict:
        return {"strength": self.strength, "guidance": self.guidance,
                "entities": [e.to_dict() for e in self.entities]}

    def frame_boxes(self, frames: int) -> np.ndarray:
        """(entities, frames, 4) boxes of every frame."""
        return np.stack([interpolate_boxes(e.boxes, frames) for e in self.entities]) if self.entities \
            else np.zeros((0, frames, 4))


def controlled_steps(num_steps: int, strength: float) -> list[bool]:
    """Which steps are layout-controlled: step i iff (i + 1) / N ≤ strength (the τ clamp's rule)."""
    return [not ((i + 1) / num_steps > strength) for i in range(num_steps)]


def token_positions(tokenizer, prompt: str, phrase: str) -> list[int]:
    """Positions (in the encoded prompt, start token = 0) of `phrase`'s tokens: every whole occurrence,
    else every occurrence of each of its words but articles; [] when none is there."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids

    def find(words: str) -> list[int]:
        target = tokenizer(words, add_special_tokens=False).input_ids
        return [p + j for p in range(1, len(ids) - len(target) + 1) if target and ids[p:p + len(target)] == target
                for j in range(len(target))]

    found = find(phrase)
    if not found:
        for word in re.findall(r"[^\s,.;:!?]+", phrase):
            if word.lower() not in _STOPWORDS:
                found += find(word)
    return sorted(set(found))
