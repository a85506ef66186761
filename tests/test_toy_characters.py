"""The toy preset's character pack (core/presets/toy/characters/pip.safetensors, trained by the characters
stage, training/toyworld/characters.py): sampled the way `storyreel generate --character` samples, it puts
more of the character's body and head colours into the frames than the init word alone does.

Loads the committed pack, never trains; the ablations (textual inversion alone, LoRA alone) are measured by
the stage's `measure`, not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import storyreel.core
from storyreel.toyworld import draw_clip, render_clip
from storyreel.training.toyworld.characters import FRAMES, depth_videos, identity_colour, sample_clips
from storyreel.training.toyworld.generator_data import depth_hint

TOY = Path(storyreel.core.__file__).parent / "presets" / "toy"
PACK = TOY / "characters" / "pip.safetensors"
# Identity colour is a share of pixels; on the committed pack the two clips below score 0.0046 and 0.0093 with
# the pack, 0.0004 and 0.0058 without it (Pip's photos: 0.10).
MARGIN = 0.003


def test_the_pip_pack_puts_more_of_pips_colours_in_the_frames_than_the_init_word(tmp_path):
    hints = [depth_hint(render_clip(draw_clip([0, k])).depth)[:FRAMES] for k in range(2)]
    structures = depth_videos(hints, tmp_path)  # grass field (seed 0) and beach (seed 1)
    with_pack = [identity_colour(frames, "pip") for _, frames in sample_clips(TOY, PACK, "pip", structures, tmp_path)]
    without = [identity_colour(frames, "pip") for _, frames in sample_clips(TOY, None, "pip", structures, tmp_path)]
    assert np.mean(with_pack) > np.mean(without) + MARGIN, (with_pack, without)
