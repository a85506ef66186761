"""The toy preset's trained generator (core/presets/toy/{base,motion_adapter,controlnet}), loaded through
the project's own loader and pipeline. The trained VAE beats its random init on held-out frames, and
the pipeline samples real pictures from the committed weights in a few steps, starting where the noise
schedule still keeps signal. (The structure and caption-colour effects are measured by
training/toyworld/generator.py `measure`; tests/test_toy_tau.py asserts the structure effect.)

Loads the committed weights, never trains (training/toyworld/generator.py trains them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import storyreel.core
from storyreel.toyworld import CAMERA_MOTIONS, caption, draw_clip, held_out_clips, render_clip
from storyreel.training.toyworld.generator import FOLDERS, load_pipeline, sample
from storyreel.training.toyworld.generator_data import depth_hint

TOY = Path(storyreel.core.__file__).parent / "presets" / "toy"
FRAMES = 4
# Held-out clips of the world the weights were trained on (write_world(clips=240, seed=0)): never seen in training.
WORLD_CLIPS, WORLD_SEED = 240, 0


@pytest.fixture(scope="module")
def pipe():
    if not all((TOY / folder).is_dir() for folder in FOLDERS):
        pytest.fail(f"the toy generator's weights are missing under {TOY}")
    return load_pipeline(TOY)


def held_out(count: int):
    """(caption, colour, hint, named-object mask) of the first `count` held-out clips."""
    numbers = sorted(held_out_clips(WORLD_CLIPS, WORLD_SEED))[:count]
    for number in numbers:
        spec = draw_clip([WORLD_SEED, number], CAMERA_MOTIONS[(number + WORLD_SEED) % len(CAMERA_MOTIONS)])
        rendered = render_clip(spec)
        yield caption(spec), spec.objects[0].colour, depth_hint(rendered.depth)[:FRAMES], rendered.ids[:FRAMES] == 1


def test_the_trained_vae_reconstructs_held_out_frames_far_better_than_its_random_init(pipe):
    from storyreel.training.toyworld.generator import psnr
    from storyreel.training.toyworld.generator_models import build_vae

    frames = np.concatenate([render_clip(draw_clip([WORLD_SEED, n])).frames[:2]
                             for n in sorted(held_out_clips(WORLD_CLIPS, WORLD_SEED))[:4]])
    torch.manual_seed(0)
    trained, untrained = psnr(pipe.vae, frames), psnr(build_vae().eval(), frames)
    assert trained > 18.0 and trained > untrained + 8.0, (trained, untrained)


def test_sampling_gives_frames_of_the_hint_size_in_a_few_steps(pipe):
    text, colour, hint, named = next(held_out(1))
    frames = sample(pipe, text, hint, 1.0, seed=0)
    assert frames.shape == (FRAMES, 64, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 10  # a picture, not a flat or saturated field


def test_sampling_starts_where_the_noise_schedule_still_keeps_signal(pipe):
    # The cosine schedule's last training timestep keeps ᾱ ≈ 2e-9; a sampler that starts there divides the
    # noise prediction's error by √ᾱ and draws the same blotches for every prompt (generator_models.py).
    pipe.scheduler.set_timesteps(20)
    first = int(pipe.scheduler.timesteps[0])
    assert float(pipe.scheduler.alphas_cumprod[first]) > 1e-3, first
