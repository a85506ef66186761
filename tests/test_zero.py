"""The t2v-zero backend (Text2Video-Zero on the image UNet) with the tiny preset: diffusers equivalence,
cross-frame attention, motion from the motion field, the depth clamp and long clips in chunks."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from storyreel.generation import GenerationSettings, Steering
from storyreel.generation.components import create_components
from storyreel.generation.pipeline import structure_steps
from storyreel.generation.zero import Chunk, StructureGuidedZeroPipeline, motion_step_indices, plan_chunks
from storyreel.testing.probes import ForwardCounter, peak_torch_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64  # pixels; latents are 8x8
STEPS = 4
PROMPT = "a red ball rolling on grass"


def moving_ramp_depth(frames: int, size: int = SIZE, speed: float = 0.03) -> torch.Tensor:
    """(F, 3, H, W) depth in [0, 1]: a horizontal ramp sliding right, like a panning camera."""
    x = torch.linspace(0, 1, size)
    maps = torch.stack([((x + speed * k) % 1.0)[None, :].expand(size, size) for k in range(frames)])
    return maps[:, None].expand(-1, 3, -1, -1).contiguous()


@pytest.fixture(scope="module")
def components():
    return create_components("tiny", backend="t2v-zero")


@pytest.fixture(scope="module")
def pipe(components):
    pipe = StructureGuidedZeroPipeline.from_components(components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, depth=None, callback=None, **settings):
    settings = {"steps": STEPS, "height": SIZE, "width": SIZE, **settings}
    return pipe(PROMPT, depth, GenerationSettings(**settings), output_type="float", callback_on_step_end=callback)


def test_default_motion_steps_are_the_papers(components):
    scheduler = type(components.scheduler).from_config(components.scheduler.config)
    scheduler.set_timesteps(50)
    assert motion_step_indices(scheduler.timesteps) == (44, 47)  # the reference's t0, t1 defaults
    # The paper's T and T′ (the tiny schedule has steps_offset 0: 940 and 880, SD1.5's 941 and 881).
    assert abs(scheduler.timesteps[-47 - 1] - 941) <= 1 and abs(scheduler.timesteps[-44 - 1] - 881) <= 1
    scheduler.set_timesteps(25)  # three steps from T to T′ at any step count, as the reference's 47 → 44
    t0, t1 = motion_step_indices(scheduler.timesteps)
    assert (t0, t1) == (21, 24)
    assert (int(scheduler.timesteps[-t1 - 1]), int(scheduler.timesteps[-t0 - 1])) == (960, 840)
    scheduler.set_timesteps(4)
    assert motion_step_indices(scheduler.timesteps) == (0, 3)  # t0 stops at the schedule's last step
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


# ------------------------------------------------------------------------------------ cross-frame attention

def test_every_frame_reads_frame_ones_keys_and_values(components, pipe, monkeypatch):
    import storyreel.generation.layout_attention as layout_attention
    import storyreel.generation.zero as zero

    events = []  # in call order: each attn1 call projects k, then v, then attends
    attn1 = [m for name, m in components.unet.named_modules() if name.endswith("attn1")]
    hooks = [module.register_forward_hook(lambda mod, args, out, kind=kind: events.append((kind, out)))
             for m in attn1 for kind, module in (("k", m.to_k), ("v", m.to_v))]
    attend = layout_attention.functional.scaled_dot_product_attention

    def recording(query, key, value, **kwargs):
        events.append(("attend", key, value))
        return attend(query, key, value, **kwargs)

    # the attention call inside the processors' shared core only (diffusers' own processors untouched)
    monkeypatch.setattr(layout_attention, "functional", SimpleNamespace(scaled_dot_product_attention=recording))
    try:
        during = {}
        generate(pipe, frames=4, steps=2, t0=0, t1=1, callback=lambda p, i, t, kw: during.update(
            {name: type(proc).__name__ for name, proc in p.unet.attn_processors.items()}))
    finally:
        for hook in hooks:
            hook.remove()
    assert {kind for name, kind in during.items() if "attn1" in name} == {"CrossFrameAttnProcessor"}
    assert "CrossFrameAttnProcessor" not in {kind for name, kind in during.items() if "attn2" in name}
    assert all(not isinstance(p, zero.CrossFrameAttnProcessor) for p in components.unet.attn_processors.values())

    calls = [events[i:i + 3] for i in range(0, len(events), 3)]
    assert all([e[0] for e in call] == ["k", "v", "attend"] for call in calls)
    all_frames = [call for call in calls if call[0][1].shape[0] == 2 * 4]  # CFG × 4 frames (after T)
    assert len(all_frames) == 2 * len(attn1)  # 2 steps denoise all frames (t1 = 1), every attn1 each step
    halves_differ = 0
    for (_, own_k), (_, own_v), (_, used_k, used_v) in all_frames:
        used_k, used_v = (x.transpose(1, 2).flatten(2) for x in (used_k, used_v))  # back to (batch, tokens, dim)
        own_k, own_v, used_k, used_v = (x.unflatten(0, (2, 4)) for x in (own_k, own_v, used_k, used_v))
        for half in range(2):  # [negative, positive]: each reads its own frame 1
            for frame in range(4):
                assert torch.equal(used_k[half, frame], own_k[half, 0])
                assert torch.equal(used_v[half, frame], own_v[half, 0])
            assert not torch.allclose(own_k[half, 1], own_k[half, 0])  # the frames' own keys do differ
        halves_differ += not torch.allclose(own_k[0, 0], own_k[1, 0])
    assert halves_differ > 0  # deeper layers see text: the two halves' frame 1 differ there


def test_lora_on_the_image_unet_works_through_cross_frame_attention(components):
    from storyreel.generation.characters.lora import add_spatial_lora

    unet = copy.deepcopy(components.unet)
    lora_pipe = StructureGuidedZeroPipeline(unet, components.controlnet, components.vae, components.text_encoder,
                                            components.tokenizer, components.scheduler)
    lora_pipe.set_progress_bar_config(disable=True)
    plain = generate(lora_pipe, frames=3, steps=2, t0=0, t1=1).frames
    add_spatial_lora(unet, "char_bear", rank=4)
    generator = torch.Generator().manual_seed(0)
    for name, parameter in unet.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (no effect): give the adapter one
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.5
    unet.set_adapters(["char_bear"], weights=[0.0])
    assert np.abs(generate(lora_pipe, frames=3, steps=2, t0=0, t1=1).frames - plain).max() <= 1e-6
    unet.set_adapters(["char_bear"], weights=[1.0])
    assert np.abs(generate(lora_pipe, frames=3, steps=2, t0=0, t1=1).frames - plain).max() > 1e-2


# ------------------------------------------------------------------------------------ motion from δ

def clip_shift(frames: np.ndarray) -> tuple[tuple[int, int], float, float]:
    """Phase correlation over a whole clip: the (dx, dy) pixel shift from each frame to the next (the
    normalized cross-power spectra of all consecutive pairs summed, one peak), its peak height and the
    next-highest value of the correlation surface (both per pair; 1 is a perfect translation)."""
    gray = frames.mean(-1).astype(np.float64)
    spectra = np.fft.fft2(gray - gray.mean(axis=(1, 2), keepdims=True))
    cross = spectra[1:] * np.conj(spectra[:-1])
    surface = np.fft.ifft2((cross / (np.abs(cross) + 1e-12)).sum(0)).real / len(cross)
    y, x = np.unravel_index(surface.argmax(), surface.shape)
    h, w = surface.shape
    second = np.sort(surface.ravel())[-2]
    return (int(x if x <= w // 2 else x - w), int(y if y <= h // 2 else y - h)), float(surface.max()), float(second)


@pytest.mark.parametrize("field", [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (-1.0, -1.0)])
def test_content_translates_along_the_motion_field(pipe, field):
    # λ = 32 on a 128-pixel frame is 32/512 of the frame per frame: 1 latent pixel, 8 image pixels.
    # With random tiny weights the motion survives only a short re-noising: T, T′ near the end (t1 = 2, t0 = 1).
    out = generate(pipe, frames=6, height=128, width=128, steps=10, t0=1, t1=2, motion_field=field,
                   motion_strength=32.0)
    (dx, dy), peak, second = clip_shift(out.frames)
    print(f"motion field {field}: measured shift per frame ({dx}, {dy}) px, peak {peak:.3f}, next {second:.3f}")
    # The reference's warp reads frame 1 at x + δ: content moves by −δ (the camera pans along δ).
    assert (dx, dy) == (round(-8 * field[0]), round(-8 * field[1]))
    assert peak > 2.5 * second


# ------------------------------------------------------------------------------------ the depth clamp

def test_tau_zero_ignores_depth_and_tau_one_follows_it(pipe):
    ramp, flipped = moving_ramp_depth(8), moving_ramp_depth(8).flip(-1)
    free_a, free_b = (generate(pipe, d, frames=8, tau=0.0) for d in (ramp, flipped))
    assert np.array_equal(free_a.frames, free_b.frames)
    assert free_a.structure_forward_passes == 0 and free_a.settings["structure_steps"] == 0
    guided_a, guided_b = (generate(pipe, d, frames=8, tau=1.0).frames for d in (ramp, flipped))
    print(f"tau=1: max change from flipping the depth {np.abs(guided_a - guided_b).max():.3f}")
    assert np.abs(guided_a - guided_b).max() > 0.03


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0])
def test_controlnet_runs_only_inside_the_clamp_in_every_chunk(components, pipe, tau):
    counter = ForwardCounter(components.controlnet)
    try:
        out = generate(pipe, moving_ramp_depth(20), frames=20, window_frames=8, tau=tau)
    finally:
        counter.restore()
    assert out.windows == [{"start": 0, "frames": 8, "overlap": 0}, {"start": 8, "frames": 8, "overlap": 1},
                           {"start": 15, "frames": 8, "overlap": 3}]
    per_chunk = sum(structure_steps(pipe.scheduler.timesteps, tau, pipe.scheduler.config.num_train_timesteps))
    print(f"tau={tau}: {counter.calls} ControlNet calls = {per_chunk} per chunk x 3 chunks")
    assert counter.calls == out.structure_forward_passes == 3 * per_chunk
    assert out.frames.shape == (20, SIZE, SIZE, 3)


# ------------------------------------------------------------------------------------ long clips

def test_chunk_plan():
    assert plan_chunks(8, 16) == [Chunk(tuple(range(8)), 0, 0)]
    chunks = plan_chunks(24, 8)
    assert [c.frame_ids for c in chunks] == [tuple(range(8)), (0, *range(8, 15)), (0, *range(15, 22)),
                                             (0, *range(17, 24))]  # the last chunk moves back: same length
    assert [(c.start, c.overlap) for c in chunks] == [(0, 0), (8, 1), (15, 1), (22, 6)]
    for frames in (9, 24, 50):
        covered = [f for c in plan_chunks(frames, 8) for f in c.frame_ids[c.overlap:]]
        assert covered == list(range(frames))


class LatentBatchRecorder:
    """Records the largest latent batch the UNet sees (activation memory grows with it)."""

    def __init__(self, unet):
        self.largest = 0
        self.hook = unet.register_forward_pre_hook(self.record)

    def record(self, module, args):
        self.largest = max(self.largest, args[0].shape[0])



@pytest.mark.parametrize("structure", ["text", "depth"])
def test_long_clip_in_chunks_keeps_frame_one_and_flat_memory(components, pipe, structure):
    depth24 = moving_ramp_depth(24) if structure == "depth" else None
    depth8 = depth24[:8] if depth24 is not None else None
    final = {}  # chunk -> its latents after the last step

    def last_step(p, step, t, tensors):
        if step % STEPS == STEPS - 1:
            final[step // STEPS] = tensors["latents"].clone()

    settings = {"window_frames": 8, "tau": 1.0, "t0": 1, "t1": 2}  # t0/t1 used by the text path only
    recorder = LatentBatchRecorder(components.unet)
    try:
        long_peak = peak_torch_bytes(lambda: final.setdefault(
            "out", generate(pipe, depth24, frames=24, callback=last_step, **settings)))
        long_batch, recorder.largest = recorder.largest, 0
        short = []
        short_peak = peak_torch_bytes(lambda: short.append(generate(pipe, depth8, frames=8, **settings)))
        short_batch = recorder.largest
    finally:
        recorder.hook.remove()
    long = final.pop("out")
    assert long.windows == [{"start": 0, "frames": 8, "overlap": 0}, {"start": 8, "frames": 8, "overlap": 1},
                            {"start": 15, "frames": 8, "overlap": 1}, {"start": 22, "frames": 8, "overlap": 6}]
    assert long.frames.shape == (24, SIZE, SIZE, 3)
    # Frame 1 is the same in every chunk (same noise, same generator state), and the first chunk is the 8-frame clip.
    first = [final[c][:, :, 0] for c in range(4)]
    differences = [float((f - first[0]).abs().max()) for f in first[1:]]
    print(f"{structure}: frame 1 latent differences across chunks {differences}")
    assert max(differences) == 0.0
    assert np.abs(long.frames[:8] - short[0].frames).max() <= 1e-5
    # Memory: the UNet never sees more than one chunk (CFG x 8 frames), and torch's peak stays that of one chunk.
    print(f"{structure}: largest UNet batch {long_batch} vs {short_batch}; peak torch memory "
          f"{long_peak / 1e6:.2f} MB (24 frames) vs {short_peak / 1e6:.2f} MB (8 frames)")
    assert long_batch == short_batch == 2 * 8
    assert long_peak <= 1.1 * short_peak


# ------------------------------------------------------------------------------------ characters, defaults

def test_per_step_text_conditioning_and_defaults(pipe):
    embeddings = pipe.encode_prompt(PROMPT)
    calls = []

    def hook(step, timestep):  # a TimeInv-style hook: the same embeddings here, so the frames must not change
        calls.append((step, timestep))
        return embeddings

    plain = generate(pipe, frames=3, steps=6, t0=1, t1=3)
    hooked = pipe(PROMPT, None, GenerationSettings(frames=3, height=SIZE, width=SIZE, steps=6, t0=1, t1=3),
                  steering=Steering(text=hook), output_type="float")
    assert np.array_equal(plain.frames, hooked.frames)
    timesteps = [int(t) for t in pipe.scheduler.timesteps]
    # Frame 1 alone from the first step to T′ (schedule positions 0..3), then every frame from T (position 2) on.
    assert calls == [(i, timesteps[i]) for i in (0, 1, 2, 3, 2, 3, 4, 5)]
    assert pipe.num_callback_steps == 4  # callbacks run on the steps that denoise every frame: positions 2..5
    # Unset frames and size: the reference's 8 frames at the UNet's sample size; no guidance works too.
    out = pipe(PROMPT, None, GenerationSettings(steps=2, cfg=1.0, t0=0, t1=1), output_type="uint8")
    assert out.frames.shape == (8, 64, 64, 3) and out.frames.dtype == np.uint8
    assert out.settings["frames"] == 8 and out.settings["backend"] == "t2v-zero" and out.settings["cfg"] == 1.0


def test_depth_with_fewer_frames_is_resampled(pipe):
    out = generate(pipe, moving_ramp_depth(4), frames=8, tau=1.0)
    assert out.notes == ["depth has 4 frames, resampled to 8 to match --frames"]
    same = generate(pipe, moving_ramp_depth(4)[[0, 0, 1, 1, 2, 2, 3, 3]], frames=8, tau=1.0)
    assert np.array_equal(out.frames, same.frames)


def test_motion_unet_is_refused_in_one_line():
    from storyreel.core.errors import UserError

    motion = create_components("tiny")  # AnimateDiff components: a UNetMotionModel
    zero_on_motion = StructureGuidedZeroPipeline.from_components(motion)
    with pytest.raises(UserError, match="runs on the image UNet alone"):
        zero_on_motion(PROMPT, None, GenerationSettings(frames=2, height=SIZE, width=SIZE, steps=2))
