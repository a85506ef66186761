"""Structure-guided generation with the tiny preset: diffusers equivalence, the clamp, seeds, long clips,
writers and the `storyreel generate` command. Every model is built in code, saved in the diffusers
layout and loaded back through `load_components`, the loader the pretrained weights use."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from storyreel.core.errors import MissingWeightsError, UserError
from storyreel.core.models import get_preset
from storyreel.core.writers import write_video
from storyreel.generation import GenerationSettings, StructureGuidedPipeline
from storyreel.generation.components import create_components, load_components
from storyreel.generation.long_clips import clip_noise, long_clip_noise, long_clip_plan, plan_windows
from storyreel.generation.pipeline import structure_steps
from storyreel.generation.tiny import offline_clip_tokenizer, write_tiny_checkpoint
from storyreel.testing.probes import ForwardCounter, peak_torch_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = get_preset("tiny").generator

SIZE = 64  # pixels; latents are 8x8
STEPS = 4


def moving_ramp_depth(frames: int, size: int = SIZE, speed: float = 0.03) -> torch.Tensor:
    """(F, 3, H, W) depth in [0, 1]: a horizontal ramp sliding right, like a panning camera."""
    x = torch.linspace(0, 1, size)
    maps = torch.stack([((x + speed * k) % 1.0)[None, :].expand(size, size) for k in range(frames)])
    return maps[:, None].expand(-1, 3, -1, -1).contiguous()


# One thread: on a shared 2-core machine torch's default thread pool oversubscribes and runs ~10x slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    folders = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-generation"))
    return load_components(**folders, ids={"base": "tiny-base", "motion_adapter": "tiny-ma", "controlnet": "tiny-cn"})


@pytest.fixture(scope="module")
def pipe(components):
    pipe = StructureGuidedPipeline.from_components(components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, depth, seed=0, **settings):
    settings = GenerationSettings(steps=STEPS, seed=seed, **settings)
    return pipe("a red ball rolling on grass", depth, settings, output_type="float")


def test_tiny_checkpoint_is_seeded_and_tokenizer_is_clip(components):
    a, b = create_components("tiny"), components  # two separate writes and loads
    for name in ("unet", "controlnet", "vae", "text_encoder"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
    assert a.ids == {"base": TINY.base, "motion_adapter": TINY.motion_adapter, "controlnet": TINY.controlnet}
    from open_clip.tokenizer import SimpleTokenizer

    text = "A teddy bear, walking in the park at 5pm!"
    assert offline_clip_tokenizer()(text).input_ids == [49406, *SimpleTokenizer().encode(text), 49407]
    assert a.tokenizer(text).input_ids == offline_clip_tokenizer()(text).input_ids


def test_structure_step_rule():
    assert structure_steps([750, 500, 250, 0], 1.0, 1000) == [True] * 4
    assert structure_steps([750, 500, 250, 0], 0.5, 1000) == [True, True, False, False]
    assert structure_steps(range(900, -1, -100), 0.2, 1000) == [True, True] + [False] * 8  # t ≥ 800
    assert structure_steps([999, 750, 500, 250], 0.0, 1000) == [False] * 4


@pytest.mark.parametrize("tau, kept", [(1.0, 4), (0.5, 2)])
def test_matches_diffusers_pipeline_and_skips_controlnet(components, pipe, tau, kept):
    from diffusers import AnimateDiffControlNetPipeline

    depth = moving_ramp_depth(8)
    counter = ForwardCounter(components.controlnet)
    try:
        ours = generate(pipe, depth, seed=3, frames=8, tau=tau)
        ours_calls, counter.calls = counter.calls, 0
        pipe = AnimateDiffControlNetPipeline(
            vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
            unet=components.unet, motion_adapter=None, controlnet=components.controlnet,
            scheduler=type(components.scheduler).from_config(components.scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        reference = pipe(prompt="a red ball rolling on grass", conditioning_frames=list(depth), num_frames=8,
                         height=SIZE, width=SIZE, num_inference_steps=STEPS, guidance_scale=7.5,
                         control_guidance_end=tau, generator=torch.Generator().manual_seed(3),
                         output_type="np").frames[0]
    finally:
        counter.restore()
    assert ours.frames.shape == reference.shape == (8, SIZE, SIZE, 3)
    assert np.abs(ours.frames - reference).max() <= 1e-4
    assert ours_calls == ours.structure_forward_passes == kept  # the clamp skips the ControlNet...
    assert counter.calls == STEPS  # ...where diffusers runs it on every step and multiplies by zero


def test_tau_zero_ignores_depth_and_tau_one_follows_it(pipe):
    ramp, flipped = moving_ramp_depth(8), moving_ramp_depth(8).flip(-1)
    free_a, free_b = (generate(pipe, d, frames=8, tau=0.0).frames for d in (ramp, flipped))
    assert np.array_equal(free_a, free_b)
    guided_a, guided_b = (generate(pipe, d, frames=8, tau=1.0).frames for d in (ramp, flipped))
    assert np.abs(guided_a - guided_b).max() > 0.03


def test_seed_decides_the_frames(pipe):
    depth = moving_ramp_depth(8)
    first, again, other = (generate(pipe, depth, seed=s, frames=8, tau=0.5).frames for s in (7, 7, 8))
    assert np.array_equal(first, again)
    assert np.abs(first - other).mean() > 1e-2


def adjacent_change(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change between consecutive frames, one value per frame pair."""
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))


def test_48_frames_in_windows_continue_across_seams(pipe):
    depth = moving_ramp_depth(48)
    long = generate(pipe, depth, frames=48, tau=1.0)
    baseline = generate(pipe, depth[:16], frames=16, tau=1.0)
    assert long.frames.shape == (48, SIZE, SIZE, 3)
    assert long.windows == [{"start": 0, "frames": 16, "overlap": 0}, {"start": 12, "frames": 16, "overlap": 4},
                            {"start": 24, "frames": 16, "overlap": 4}, {"start": 32, "frames": 16, "overlap": 8}]
    assert long.structure_forward_passes == 4 * STEPS
    # The first window is exactly the 16-frame clip (same noise, same steps).
    assert np.abs(long.frames[:16] - baseline.frames).max() <= 1e-5
    # Seam metric: where a window's new frames begin (after its overlap), the frame-to-frame change
    # lies within the range of ordinary frame-to-frame changes of the 16-frame baseline: no jump
    # (above its largest change) and no frozen, repeated frame (below half its smallest).
    seams = [w["start"] + w["overlap"] for w in long.windows[1:]]
    change, ordinary = adjacent_change(long.frames), adjacent_change(baseline.frames)
    seam_change = [change[s - 1] for s in seams]
    assert 0.5 * ordinary.min() <= min(seam_change) and max(seam_change) <= ordinary.max(), (seam_change, ordinary)
    assert np.isfinite(long.frames).all() and long.frames.std() > 0.05
    # No content cycle: frames one window stride (12) apart are no more alike than frames at other lags
    # (~0.05 here; 0.64 when every new frame took 97% of the noise of the frame 12 before it).
    similarity = {lag: lag_similarity(long.frames, lag) for lag in range(8, 17)}
    assert similarity[12] <= 0.3 and similarity[12] <= 2 * max(similarity[lag] for lag in (10, 11, 13, 14)) + 0.1, \
        similarity


def lag_similarity(frames: np.ndarray, lag: int) -> float:
    """Mean cosine similarity of mean-removed frames `lag` apart (1: identical content, ~0: unrelated)."""
    flat = frames.reshape(len(frames), -1).astype(np.float64)
    flat -= flat.mean(1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    return float((flat[:-lag] * flat[lag:]).sum(1).mean())


def test_default_long_noise_is_not_periodic():
    """The default mode's noise: frames one stride apart share almost nothing (≤ 0.5; it was 0.97)."""
    plans = long_clip_plan(64, 16, 4, STEPS)
    noise = clip_noise(plans, long_clip_noise((1, 4, 64, 8, 8), plans, "overlap", torch.Generator().manual_seed(0),
                                              torch.float32))[0].transpose(0, 1).flatten(1)
    noise = (noise - noise.mean(1, keepdim=True)) / noise.std(1, keepdim=True)
    assert float((noise[:-12] * noise[12:]).mean()) <= 0.5
    assert all(float((noise[k] * noise[k + 1]).mean()) <= 0.5 for k in range(63))  # no repeated frame at a seam


def test_freenoise_mode_reschedules_noise_and_fuses_windows(pipe):
    """`--long freenoise`: after the first window each block of 4 frames repeats the block 16 frames
    earlier in a shuffled order; every step runs all windows and fuses their noise predictions."""
    plans = long_clip_plan(48, 16, 4, STEPS, "freenoise")
    noise = clip_noise(plans, long_clip_noise((1, 4, 48, 8, 8), plans, "freenoise", torch.Generator().manual_seed(0),
                                              torch.float32))[0].transpose(0, 1)
    for start in range(16, 48, 4):
        block, earlier = noise[start:start + 4].flatten(1), noise[start - 16:start - 12].flatten(1)
        assert sorted(block.sum(1).tolist()) == sorted(earlier.sum(1).tolist())  # the same frames, reordered
    seen = []
    out = pipe("a red ball rolling on grass", moving_ramp_depth(48),
               GenerationSettings(steps=STEPS, seed=0, tau=1.0, long="freenoise"), output_type="float",
               callback_on_step_end=lambda p, step, t, tensors: seen.append((step, tuple(tensors["latents"].shape))))
    assert seen == [(i, (1, 4, 48, 8, 8)) for i in range(STEPS)]  # one callback per step, on the whole clip
    assert out.structure_forward_passes == 4 * STEPS and out.frames.shape == (48, SIZE, SIZE, 3)
    change = adjacent_change(out.frames)
    assert all(0.5 * np.median(change) <= change[s - 1] <= 1.5 * np.median(change) for s in (16, 28, 40))
    assert lag_similarity(out.frames, 12) <= 0.3


def test_vidrd_mode_equals_the_official_reuse_and_diffuse(pipe, monkeypatch):
    """`--long vidrd` against a reference written from the official code's description: clip k+1 has
    N = 16 positions, its first M = 4 mirror clip k's last 4. FNR: noise[0:M] = flip(prev_noise)[0:M].
    PNS: noise[p >= M] = (4·flip(prev_noise)[p] + ε)/√17. DSG: before step i, position f < M is
    flip(prev_latents_i)[f] while i < (M − f)·(T/M)·0.4. Kept: every position of every clip, concatenated
    (the official code's torch.cat of whole clips); the depth of position f < M is the mirrored previous
    depth, positions p >= M follow the next depth frames."""
    n, m, r, frames = 16, 4, 4.0, 48
    # Reference noise, drawn as the official code draws it: clip 0, then each clip's ε in order.
    generator = torch.Generator().manual_seed(5)
    reference = [torch.randn((1, 4, n, 8, 8), generator=generator)]
    while len(reference) < 3:
        flipped = reference[-1].flip(2)
        eps = torch.randn((1, 4, n, 8, 8), generator=generator)[:, :, m:]  # drawn for the whole clip
        reference.append(torch.cat([flipped[:, :, :m], (r * flipped[:, :, m:] + eps) / (1 + r * r) ** 0.5], 2))
    schedule = {(i, f) for i in range(STEPS) for f in range(m) if i < (m - f) * (STEPS / m) * 0.4}
    kept = [list(range(16)), list(range(16, 32)), list(range(32, 48))]
    depth_ids = [list(range(16))] + [[s - 1, s - 2, s - 3, s - 4] + [min(s + p, 47) for p in range(12)]
                                     for s in (16, 28)]

    plans = long_clip_plan(frames, n, m, STEPS, "vidrd")
    assert [list(p.frame_ids) for p in plans] == depth_ids
    assert [[o for _, o in p.keep] for p in plans] == kept
    assert all([q for q, _ in p.keep] == list(range(n)) for p in plans)  # mirrored positions too
    drawn = long_clip_noise((1, 4, frames, 8, 8), plans, "vidrd", torch.Generator().manual_seed(5), torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(drawn, reference, strict=True))

    # The pipeline itself: the latents entering every step, the depth each window sees, its final latents.
    seen, finals = [], []
    predict = pipe.predict_noise

    def record(model_input, t, embeddings, run, step, control=None, controlnet_input=None):
        seen.append((model_input[:1].clone(), control[:n].clone()))
        return predict(model_input, t, embeddings, run, step, control, controlnet_input)

    def final(pipeline, step, timestep, tensors):
        if step % STEPS == STEPS - 1:
            finals.append(tensors["latents"].clone())
        return tensors

    monkeypatch.setattr(pipe, "predict_noise", record)
    depth = moving_ramp_depth(frames)
    out = pipe("a red ball rolling on grass", depth, GenerationSettings(steps=STEPS, seed=5, tau=1.0, long="vidrd"),
               output_type="float", callback_on_step_end=final)
    latents = [[seen[w * STEPS + i][0] for i in range(STEPS)] for w in range(3)]
    assert all(torch.equal(latents[w][0], reference[w]) for w in range(3))  # DDIM: init_noise_sigma = 1
    assert all(torch.equal(seen[w * STEPS][1], depth[depth_ids[w]].to(seen[0][1].dtype)) for w in range(3))
    for w in range(1, 3):
        for i in range(STEPS):
            previous = latents[w - 1][i].flip(2)
            replaced = {f for f in range(m) if torch.equal(latents[w][i][:, :, f], previous[:, :, f])}
            assert replaced == {f for f in range(m) if (i, f) in schedule}, (w, i, replaced)
    for w, plan in enumerate(plans):
        positions = [q for q, _ in plan.keep]
        decoded = (pipe.decode_latents(finals[w][:, :, positions], 4) / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 3, 0)
        assert np.abs(out.frames[kept[w]] - decoded.numpy()).max() <= 1e-5
    assert out.windows == [{"start": 0, "frames": 16, "overlap": 0}, {"start": 16, "frames": 16, "overlap": 4},
                           {"start": 32, "frames": 16, "overlap": 4}]
    assert out.settings["long"] == "vidrd"



@pytest.mark.parametrize("mode", ["overlap", "vidrd", "freenoise"])
def test_long_clip_memory_is_flat_in_length(pipe, mode):
    """Sampling memory does not grow with the clip: only the clip-sized tensors do, the prepared depth and
    the decoded frames (F·3·H·W floats each)."""
    depths = {f: moving_ramp_depth(f) for f in (28, 64)}
    peaks = {f: peak_torch_bytes(lambda f=f: generate(pipe, depths[f], frames=f, tau=1.0, long=mode))
             - 2 * f * 3 * SIZE * SIZE * 4 for f in (28, 64)}
    print(f"{mode}: peak torch memory less depth and output {peaks[28] / 1e6:.2f} MB (28 frames) vs "
          f"{peaks[64] / 1e6:.2f} MB (64 frames)")
    assert peaks[64] <= 1.02 * peaks[28]


def test_window_plan_covers_every_frame_once():
    for frames in (17, 30, 48, 100):
        windows = plan_windows(frames, 16, 4)
        covered = [f for w in windows for f in range(w.start + w.overlap, w.end)]
        assert covered == list(range(frames))
        assert all(w.end - w.start == 16 and w.overlap >= (4 if k else 0) for k, w in enumerate(windows))


def test_bad_depth_and_short_depth(pipe):
    with pytest.raises(UserError, match=r"depth conditioning has shape \(8, 64, 64\); expected \(frames, 3"):
        generate(pipe, torch.rand(8, SIZE, SIZE), frames=8)
    result = generate(pipe, moving_ramp_depth(4), frames=8, tau=1.0)
    assert result.notes == ["depth has 4 frames, resampled to 8 to match --frames"]
    assert result.frames.shape[0] == 8


def test_missing_default_weights_is_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        create_components("default")
    message = str(err.value)
    assert "\n" not in message and "stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "--models toy" in message


def test_writers_are_atomic(tmp_path, monkeypatch):
    frames = (np.random.default_rng(0).random((6, 32, 48, 3)) * 255).astype(np.uint8)
    write_video(frames, tmp_path / "clip.gif", metadata={"seed": 1})
    assert json.loads((tmp_path / "clip.gif.json").read_text())["seed"] == 1
    write_video(frames, tmp_path / "frames", metadata={"seed": 1})
    assert sorted(p.name for p in (tmp_path / "frames").iterdir())[:2] == ["frame_00000.png", "frame_00001.png"]

    import imageio.v3 as iio

    write_video(frames, tmp_path / "clip.mp4")
    assert iio.imread(tmp_path / "clip.mp4").shape == (6, 32, 48, 3)

    import storyreel.core.writers as writers

    def broken(frames, tmp, *settings):
        tmp.write_bytes(b"half a video")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, "_write_animation", broken)
    with pytest.raises(UserError, match="could not write"):
        write_video(frames, tmp_path / "new.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "clip.gif.json", "clip.mp4", "frames",
                                                          "frames.json"]
    with pytest.raises(UserError, match="does not exist"):
        write_video(frames, tmp_path / "no" / "such" / "clip.mp4")


def write_depth_video(path, frames: int) -> None:
    depth = (moving_ramp_depth(frames)[:, 0].numpy() * 255).round().astype(np.uint8)
    write_video(np.repeat(depth[..., None], 3, axis=-1), path, metadata={"kind": "depth"})


def test_generate_command(run_cli, tmp_path, components):
    source = tmp_path / "walk_depth.mp4"
    write_depth_video(source, frames=6)
    out = tmp_path / "clip_frames"
    proc = run_cli("generate", "--prompt", "a cat on a sofa", "--structure", source, "--out", out,
                   "--models", "tiny", "--frames", "8", "--tau", "0.5", "--seed", "5", "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["seed"] == 5 and summary["tau"] == 0.5 and summary["structure_forward_passes"] == 2
    assert summary["components"] == {"base": TINY.base, "motion_adapter": TINY.motion_adapter,
                                     "controlnet": TINY.controlnet}
    assert summary["structure"]["kind"] == "depth-video"
    assert "storyreel: note: structure" in proc.stderr and "has 6 frames, resampled to 8" in proc.stderr
    assert json.loads((tmp_path / "clip_frames.json").read_text()) == summary
    # The sidecar holds enough to regenerate the same frames.
    from PIL import Image

    from storyreel.generation.generate import load_structure

    written = np.stack([np.asarray(Image.open(p)) for p in sorted(out.iterdir())])
    depth, _, _ = load_structure(source, preset="tiny", frames=8, size=(summary["height"], summary["width"]))
    settings = GenerationSettings(**{k: summary[k] for k in GenerationSettings.__dataclass_fields__})
    again = StructureGuidedPipeline.from_components(components)(  # the same tiny weights
        summary["prompt"], depth, settings, negative_prompt=summary["negative_prompt"])
    assert np.array_equal(again.frames, written)


def test_the_structure_plays_in_real_time_at_the_output_frame_rate(run_cli, tmp_path):
    source = tmp_path / "eight_seconds.mp4"
    write_depth_video(source, frames=64)  # 8 s at 8 fps
    proc = run_cli("generate", "--prompt", "a cat", "--structure", source, "--out", tmp_path / "clip.mp4",
                   "--models", "tiny", "--frames", "16", "--steps", "1", "--speed", "2", "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    structure = json.loads(proc.stdout)["structure"]
    # 16 frames at 8 fps (2 s) at speed 2 read 4 s of the source, centred: frames 16.5 + 2k, rounded
    assert structure["frame_indices"] == [round(16.5 + 2 * k) for k in range(16)] and structure["speed"] == 2.0
    assert json.loads(proc.stdout)["speed"] == 2.0


def test_generate_command_unwritable_output(run_cli, tmp_path):
    source = tmp_path / "d.mp4"
    write_depth_video(source, frames=4)
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file, not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli("generate", "--prompt", "x", "--structure", source, "--out", not_a_folder / "clip.mp4",
                   "--models", "tiny", env=ONE_THREAD)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"storyreel: error: --out {not_a_folder / 'clip.mp4'}: {not_a_folder} is a file, not a folder; "
        "choose another path"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("setting, message", [
    ("frames", "frames must be a positive number (got 0)"),
    ("steps", "steps must be at least 1 (got 0)"),
    ("height", "height and width must be positive multiples of 8 (got 0x64)"),
])
def test_explicit_zero_is_an_error_not_the_preset_default(tmp_path, setting, message):
    from storyreel.generation.generate import ClipRequest, generate_clip

    source = tmp_path / "d.mp4"
    write_depth_video(source, frames=4)
    with pytest.raises(UserError) as err:
        generate_clip(ClipRequest("a cat", source), tmp_path / "clip.mp4",
                      GenerationSettings.for_preset("tiny", **{setting: 0}), preset="tiny", device="cpu")
    assert str(err.value) == message
    assert not (tmp_path / "clip.mp4").exists()


def test_depth_of_another_shape_is_resampled_by_depths_rule(pipe):
    """Frames spread as storyreel.core.video.spread_indices; size by cover + centre crop, as
    depth.to_conditioning does."""
    from storyreel import depth

    wide = torch.rand(5, 32, 96)  # (F, H, W): a 3:1 depth clip, 5 frames
    notes = []
    prepared = pipe.prepare_depth(wide[:, None].expand(-1, 3, -1, -1), GenerationSettings(8, SIZE, SIZE), notes)
    expected = depth.to_conditioning(wide, (SIZE, SIZE), 8)
    assert prepared.shape == (8, 3, SIZE, SIZE)
    torch.testing.assert_close(prepared, expected)
    assert notes == ["depth has 5 frames, resampled to 8 to match --frames"]


def test_png_folder_is_published_with_the_umask_mode(tmp_path):
    import os

    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    old = os.umask(0o022)
    try:
        write_video(frames, tmp_path / "frames")
    finally:
        os.umask(old)
    assert (tmp_path / "frames").stat().st_mode & 0o777 == 0o755  # as mkdir makes it, not mkdtemp's 0700


def test_depth_model_loads_only_for_sources_that_need_depth_estimation(tmp_path):
    from storyreel.generation.generate import ClipGenerator, ClipRequest

    source = tmp_path / "d.mp4"
    write_depth_video(source, frames=4)
    generator = ClipGenerator("tiny", device="cpu")
    one_step = GenerationSettings.for_preset("tiny", frames=4, steps=1)
    steps = []
    clip = generator.generate(ClipRequest("a cat", source), tmp_path / "from_depth.gif", one_step,
                              on_step=lambda done, total: steps.append((done, total)))
    assert steps == [(1, 1)]  # on_step after each denoising step
    assert clip.sidecar["structure"]["kind"] == "depth-video"
    assert generator._depth_model is None  # a depth video needs no depth model (no MiDaS weights either)

    video = tmp_path / "plain.mp4"
    from storyreel.core.video import write_mp4
    write_mp4(video, np.full((4, 64, 64, 3), 128, np.uint8), fps=8)
    generator.generate(ClipRequest("a cat", video), tmp_path / "from_video.gif", one_step)
    assert generator._depth_model is not None and generator._depth_model.predict_calls == 1


def test_missing_structure_source_fails_before_models_load(tmp_path, monkeypatch):
    from storyreel.generation import generate as generate_module

    def no_models(*args, **kwargs):
        raise AssertionError("models must not load for a bad structure source")

    monkeypatch.setattr(generate_module, "ClipGenerator", no_models)
    with pytest.raises(UserError) as err:
        generate_module.generate_clip(generate_module.ClipRequest("a cat", tmp_path / "nope.mp4"), tmp_path / "out.mp4",
                                      preset="default")
    assert str(err.value) == (f"source {tmp_path / 'nope.mp4'} does not exist "
                              "(give a video, an image, or a clip id with --index)")


def test_pipeline_saves_and_loads_as_a_diffusers_pipeline(pipe, components, tmp_path):
    pipe.save_pretrained(tmp_path / "saved")
    model_index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert model_index["_class_name"] == "StructureGuidedPipeline"
    assert model_index["unet"] == ["diffusers", "UNetMotionModel"]
    assert model_index["controlnet"] == ["diffusers", "ControlNetModel"]
    loaded = StructureGuidedPipeline.from_pretrained(tmp_path / "saved")
    assert loaded.ids == pipe.ids == components.ids
    for name in ("unet", "controlnet", "vae", "text_encoder"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    loaded.set_progress_bar_config(disable=True)
    depth = moving_ramp_depth(8)
    first = generate(loaded, depth, frames=8, tau=0.5)
    # Weights loaded by a bare model class sit at other byte offsets than a pipeline load gives them,
    # and the CPU conv kernels round differently on them (~4e-7): equal within float error here,
    # and bit-identical between two pipeline loads.
    assert np.abs(first.frames - generate(pipe, depth, frames=8, tau=0.5).frames).max() <= 1e-5
    loaded.save_pretrained(tmp_path / "again")
    again = StructureGuidedPipeline.from_pretrained(tmp_path / "again")
    again.set_progress_bar_config(disable=True)
    assert np.array_equal(generate(again, depth, frames=8, tau=0.5).frames, first.frames)


def test_cpu_offload_and_step_callbacks_across_windows():
    pipe = StructureGuidedPipeline.from_components(create_components("tiny"))  # offload hooks its own models
    pipe.set_progress_bar_config(disable=True)
    depth, settings = moving_ramp_depth(20), GenerationSettings(steps=STEPS, seed=2, tau=0.5)
    plain = pipe("a red ball", depth, settings).frames
    pipe.enable_model_cpu_offload(device="cpu")  # the CPU stands in for the accelerator here
    assert len(pipe._all_hooks) == 4  # text encoder -> UNet -> VAE, plus the ControlNet's own hook
    seen = []

    def record(pipeline, step, timestep, tensors):
        seen.append((step, int(timestep), tuple(tensors["latents"].shape)))
        return tensors

    offloaded = pipe("a red ball", depth, settings, callback_on_step_end=record).frames
    assert np.array_equal(offloaded, plain)
    pipe.scheduler.set_timesteps(STEPS)
    timesteps = pipe.scheduler.timesteps.tolist()
    assert seen == [(w * STEPS + i, t, (1, 4, 16, 8, 8)) for w in range(2) for i, t in enumerate(timesteps)]
    assert pipe.num_callback_steps == len(seen)  # what a progress callback counts up to

    def drop_last(pipeline, step, timestep, tensors):  # replacing latents changes the result
        return {"latents": tensors["latents"] * 0} if step == 2 * STEPS - 1 else tensors

    changed = pipe("a red ball", depth, settings, callback_on_step_end=drop_last).frames
    # Windows [0, 16) and [4, 20): the second window's final step only decides frames 16-19.
    assert np.array_equal(changed[:16], plain[:16])
    assert all(not np.array_equal(changed[f], plain[f]) for f in range(16, 20))
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        pipe("a red ball", depth, settings, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["noise"])
