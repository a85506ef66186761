"""The t2v-zero backend (Text2Video-Zero on the image UNet) with the tiny preset: diffusers equivalence,
cross-frame attention, motion from the motion field, the depth clamp and long clips in chunks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from storyreel.generation import GenerationSettings
from storyreel.generation.components import create_components
from storyreel.generation.zero import StructureGuidedZeroPipeline, motion_step_indices

SIZE = 64  # pixels; latents are 8x8
STEPS = 4
PROMPT = "a red ball rolling on grass"


def moving_ramp_depth(frames: int, size: int = SIZE, speed: float = 0.03) -> torch.Tensor:
    """(F, 3, H, W) depth in [0, 1]: a horizontal ramp sliding right, like a panning camera."""
    x = torch.linspace(0, 1, size)
    maps = torch.stack([((x + speed * k) % 1.0)[None, :].expand(size, size) for k in range(frames)])
    return maps[:, None].expand(-1, 3, -1, -1).contiguous()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: torch's default pool oversubscribes
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def components():
    return create_components("tiny", backend="t2v-zero")


@pytest.fixture(scope="module")
def pipe(components):
    pipe = StructureGuidedZeroPipeline.from_components(components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, depth=None, **settings):
    settings = {"steps": STEPS, "height": SIZE, "width": SIZE, **settings}
    return pipe(PROMPT, depth, GenerationSettings(**settings), output_type="float")


class ForwardCounter:
    """Wraps a module's forward and counts calls."""

    def __init__(self, module):
        self.calls, self.module, self.original = 0, module, module.forward

        def counted(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)

        module.forward = counted

    def restore(self):
        self.module.forward = self.original


def test_default_motion_steps_are_the_papers(components):
    scheduler = type(components.scheduler).from_config(components.scheduler.config)
    scheduler.set_timesteps(50)
    assert motion_step_indices(scheduler.timesteps) == (44, 47)  # the reference's t0, t1 defaults
    # The paper's T and T′ (the tiny schedule has steps_offset 0: 940 and 880, SD1.5's 941 and 881).
    assert abs(scheduler.timesteps[-47 - 1] - 941) <= 1 and abs(scheduler.timesteps[-44 - 1] - 881) <= 1
    scheduler.set_timesteps(4)
    t0, t1 = motion_step_indices(scheduler.timesteps)
    assert 0 <= t0 < t1 < 4
    assert motion_step_indices(scheduler.timesteps, 1, 2) == (1, 2)


def test_text_only_matches_diffusers_text_to_video_zero(components, pipe):
    from diffusers import TextToVideoZeroPipeline

    before = components.unet.attn_processors
    ours = generate(pipe, frames=8, steps=50, seed=3)  # δ = (1, 1), λ = 12, t0/t1 unset
    after = components.unet.attn_processors
    assert all(after[name] is before[name] for name in before)  # our processors are put back
    assert (ours.settings["t0"], ours.settings["t1"], ours.settings["backend"]) == (44, 47, "t2v-zero")
    # The reference installs its own processors: give it its own UNet.
    reference = TextToVideoZeroPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=copy.deepcopy(components.unet),
        scheduler=type(components.scheduler).from_config(components.scheduler.config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    reference.set_progress_bar_config(disable=True)
    with pytest.warns(Warning):  # deprecation and meshgrid warnings of the reference
        expected = reference(PROMPT, video_length=8, height=SIZE, width=SIZE, num_inference_steps=50,
                             guidance_scale=7.5, motion_field_strength_x=12, motion_field_strength_y=12,
                             generator=torch.Generator().manual_seed(3)).images
    assert ours.frames.shape == expected.shape == (8, SIZE, SIZE, 3)
    difference = np.abs(ours.frames - expected).max()
    print(f"parity max abs difference: {difference:.2e}")
    assert difference <= 1e-4
    assert ours.windows == [{"start": 0, "frames": 8, "overlap": 0}]
