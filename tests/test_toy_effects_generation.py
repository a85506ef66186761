"""Generation methods' effects on the committed toy weights (core/presets/toy), where they show with a
margin (training/toyworld/layouts.py, long_clips.py and zero.py measure each against its ablation;
layout control and the long-clip modes do not show clearly on the committed weights, so they have no
test here).

Text2Video-Zero (generation/zero.py): cross-frame attention and the shared first-frame latent make
consecutive frames far more alike than frames of the same caption sampled one at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import storyreel.core
from storyreel.generation.settings import GenerationSettings
from storyreel.toyworld import caption, draw_clip, held_out_clips
from storyreel.training.toyworld.generator import SAMPLING, load_pipeline
from storyreel.training.toyworld.long_clips import frame_change
from storyreel.training.toyworld.zero import FOLDERS

TOY = Path(storyreel.core.__file__).parent / "presets" / "toy"
FRAMES = 4


@pytest.fixture(scope="module")
def zero_pipe():
    if not all((TOY / folder).is_dir() for folder in FOLDERS):
        pytest.fail(f"the toy generator's weights are missing under {TOY}")
    return load_pipeline(TOY, backend="t2v-zero")


def test_text2video_zero_frames_change_far_less_than_independently_sampled_frames(zero_pipe):
    settings = GenerationSettings(frames=FRAMES, height=64, width=64, **SAMPLING)
    video_change, independent_change = [], []
    for k, number in enumerate(sorted(held_out_clips(240, 0))[:2]):
        text = caption(draw_clip([0, number]))
        video = zero_pipe(text, None, settings.replace(seed=k)).frames
        independent = np.concatenate([zero_pipe(text, None, settings.replace(frames=1, seed=1000 * k + f)).frames
                                      for f in range(FRAMES)])
        video_change.append(frame_change(video).mean())
        independent_change.append(frame_change(independent).mean())
    assert np.mean(video_change) < 0.75 * np.mean(independent_change), (video_change, independent_change)
