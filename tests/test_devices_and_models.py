"""Where models run (core/devices.py) and swapping one component of a preset without code
(core/models.py `with_overrides`): `--base DIR`, `--base FILE.safetensors`, `--depth-model DIR`,
fp16-only caches, the one-line `hf download ... --include ...` of a missing component, `storyreel doctor`."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

from storyreel.core import devices
from storyreel.core.errors import MissingWeightsError, UserError
from storyreel.core.models import as_defined, clip_for_model_id, get_preset, parse_clip, with_overrides

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def fake_snapshot(cache, repo: str, files: list[str]):
    """A Hugging Face cache entry of `repo` holding `files` (tiny placeholders), as `hf download` leaves it."""
    entry = cache / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / ("0" * 40)
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("{}")
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    (entry / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_device_defaults_to_cuda_when_present_else_cpu(monkeypatch, run_cli, tmp_path):
    from storyreel.index.embed import load_clip

    monkeypatch.setattr(devices, "cuda_available", lambda: True)  # the choice, not the GPU, is what is tested
    assert devices.pick_device(None) == torch.device("cuda")
    assert devices.pick_dtype(None, torch.device("cuda")) == torch.float16

    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    assert devices.pick_device(None) == torch.device("cpu") and devices.pick_device("cpu") == torch.device("cpu")
    assert devices.pick_dtype(None, torch.device("cpu")) == torch.float32
    assert devices.pick_dtype(None, torch.device("cpu"), training=True) == torch.float32  # no autocast
    assert devices.pick_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(UserError, match=r"^--dtype 'fp8': expected fp32, fp16 or bf16$"):
        devices.pick_dtype("fp8", "cpu")
    with pytest.raises(UserError, match=r"^--device 'tpu': expected cpu, cuda or cuda:N$"):
        devices.pick_device("tpu")
    embedder = load_clip("tiny")
    assert embedder.device.type == "cpu" and next(embedder.model.parameters()).dtype == torch.float32

    # --device cuda without CUDA: one line, exit 1, before any work
    for argv in (["index", "build", tmp_path, "--index", tmp_path / "index"],
                 ["character", "train", tmp_path, "--token", "<t>", "--init-word", "bear", "--out", tmp_path / "p"],
                 ["search", "a cat", "--index", tmp_path / "index"]):
        proc = run_cli(*argv, "--models", "tiny", "--device", "cuda")
        assert proc.returncode == 1 and proc.stdout == "", argv
        assert proc.stderr.startswith("storyreel: error: --device cuda: CUDA is not available here")
        assert proc.stderr.endswith("use --device cpu\n") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "index").exists()


def test_every_model_command_takes_device_and_dtype():
    from storyreel.cli import build_parser

    def leaves(parser, words=()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield " ".join(words), {o for a in parser._actions for o in a.option_strings}
        for action in subs:
            for name, sub in action.choices.items():
                yield from leaves(sub, (*words, name))

    flags = dict(leaves(build_parser()))
    # plan loads no model; demo's --models picks toy or tiny and runs on the default device
    model_commands = {c for c, f in flags.items() if "--models" in f} - {"plan", "demo"}
    assert model_commands == {"index build", "search", "depth", "generate", "character train", "eval", "render",
                              "ui"}
    for command in model_commands:
        assert {"--device", "--dtype"} <= flags[command], command
    assert {"--base", "--motion-adapter", "--controlnet", "--scheduler", "--depth-model"} <= flags["generate"]
    assert {"--clip", "--base", "--depth-model", "--cpu-offload"} <= flags["render"]
    assert "--clip" in flags["search"] and "--clip" in flags["index build"] and "--depth-model" in flags["depth"]


def test_overrides_are_one_replace_each(tmp_path):
    folder = tmp_path / "my-sd15"
    folder.mkdir()
    swapped = with_overrides("default", base=str(folder), controlnet="org/depth-cn", scheduler="EulerDiscreteScheduler",
                             depth="depth-anything/Depth-Anything-V2-Small-hf", clip="hf-hub:timm/ViT-B-16-SigLIP")
    default = get_preset("default")
    assert swapped.name == "default" and swapped.generator.base == str(folder.resolve())
    assert swapped.generator.controlnet == "org/depth-cn"
    assert swapped.generator.motion_adapter == default.generator.motion_adapter
    assert swapped.generator.scheduler.name == "EulerDiscreteScheduler"
    assert swapped.generator.scheduler.config == default.generator.scheduler.config  # AnimateDiff's settings kept
    assert swapped.depth == "depth-anything/Depth-Anything-V2-Small-hf"
    assert swapped.clip.weights_repo == "timm/ViT-B-16-SigLIP" and get_preset("default") == default  # registry intact
    assert as_defined(swapped) is default  # the preset before the swaps

    clip = parse_clip("ViT-B-32:laion2b_s34b_b79k")  # open_clip's pretrained tag names its HF repo
    assert clip == default.clip and clip_for_model_id(clip.model_id) == clip
    assert clip_for_model_id("open_clip:tiny:seed0") == get_preset("tiny").clip  # what a tiny index records
    assert clip_for_model_id("open_clip:hf-hub:timm/ViT-B-16-SigLIP").architecture == "hf-hub:timm/ViT-B-16-SigLIP"
    with pytest.raises(UserError, match="--scheduler 'Fast' is not a diffusers scheduler"):
        with_overrides("tiny", scheduler="Fast")
    with pytest.raises(UserError, match=r"--base \./nowhere\.safetensors: no such file or folder"):
        with_overrides("tiny", base="./nowhere.safetensors")
    with pytest.raises(UserError, match="open_clip has no pretrained tag 'nope'"):
        parse_clip("ViT-B-32:nope")


def test_generate_with_a_base_folder_and_with_a_single_file_checkpoint(run_cli, tmp_path):
    from single_file import write_single_file

    from storyreel.core.writers import write_video
    from storyreel.generation.tiny import write_tiny_checkpoint

    folders = write_tiny_checkpoint(tmp_path / "seed1", seed=1)  # another fine-tune of the tiny architecture
    base = folders["base_dir"]
    single = write_single_file(base, tmp_path / "my-model.safetensors")  # ComfyUI/A1111 layout
    for weights in base.rglob("*.safetensors"):  # the folder keeps only fp16-variant files, like an fp16 cache
        weights.rename(weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    depth = np.zeros((4, 64, 64, 3), np.uint8)
    depth[:, :, :32] = 200
    write_video(depth, tmp_path / "depth.mp4", metadata={"kind": "depth"})

    frames = {}
    for name, model in (("folder", base), ("file", single)):
        out = tmp_path / name
        proc = run_cli("generate", "--prompt", "a cat", "--structure", tmp_path / "depth.mp4", "--out", out,
                       "--models", "tiny", "--base", model, "--frames", "4", "--steps", "2", "--json", env=ONE_THREAD)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["components"]["base"] == str(model.resolve())
        assert summary["components"]["controlnet"] == get_preset("tiny").generator.controlnet  # the rest: tiny's
        frames[name] = np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))])
    assert frames["folder"].shape == (4, 64, 64, 3)
    # The same seed-1 weights, read from the fp16-only folder and from the single file: the same frames.
    assert np.array_equal(frames["folder"], frames["file"])

    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, tmp_path / "lora.safetensors")
    proc = run_cli("generate", "--prompt", "a cat", "--structure", tmp_path / "depth.mp4", "--out", tmp_path / "x",
                   "--models", "tiny", "--base", tmp_path / "lora.safetensors")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "lora.safetensors: not a Stable Diffusion 1.x single-file checkpoint" in proc.stderr


def test_depth_model_from_a_transformers_folder(run_cli, tmp_path):
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    model = DPTForDepthEstimation(DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=64,
        patch_size=16, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, backbone_out_indices=[0, 1, 2, 3],
        reassemble_factors=[4, 2, 1, 0.5])).eval()
    model.save_pretrained(tmp_path / "tiny-dpt")
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")

    proc = run_cli("depth", tmp_path / "photo.png", "--out", tmp_path / "depth.mp4", "--depth-model",
                   tmp_path / "tiny-dpt", "--raw", tmp_path / "raw.npy", "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"] == str((tmp_path / "tiny-dpt").resolve()) and report["frames"] == 1
    # A 64x64 frame is already at the network size: the raw output is the model's own prediction.
    pixels = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = model(pixel_values=pixels).predicted_depth.numpy()
    assert np.allclose(np.load(tmp_path / "raw.npy"), expected, rtol=1e-4, atol=1e-12)

    proc = run_cli("depth", tmp_path / "photo.png", "--out", tmp_path / "d.mp4", "--depth-model", "nonsense")
    assert proc.returncode == 1 and "unknown depth model 'nonsense' (--depth-model)" in proc.stderr


def test_a_missing_component_names_only_the_files_to_fetch(run_cli, hf_cache, tmp_path):
    from storyreel.core.hub import hf_folder

    proc = run_cli("generate", "--prompt", "a cat", "--out", tmp_path / "a.gif", "--models", "default",
                   "--backend", "t2v-zero")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert (f"`hf download {SD15} --include \"*.json\" \"tokenizer/*\" text_encoder/model.safetensors "
            "unet/diffusion_pytorch_model.safetensors vae/diffusion_pytorch_model.safetensors`") in proc.stderr
    assert str(hf_cache) in proc.stderr and "huggingface-cli" not in proc.stderr

    # Half a download: the command fetches what is still missing; an fp16-only cache counts as there.
    adapter = "guoyww/animatediff-motion-adapter-v1-5-3"
    fake_snapshot(hf_cache, adapter, ["config.json"])
    with pytest.raises(MissingWeightsError) as err:
        hf_folder(adapter, "the motion adapter")
    assert str(err.value).endswith(f"`hf download {adapter} --include diffusion_pytorch_model.safetensors` on a "
                                   "machine with internet (or set HF_HOME), or use --models toy")
    snapshot = fake_snapshot(hf_cache, "lllyasviel/control_v11f1p_sd15_depth",
                             ["config.json", "diffusion_pytorch_model.fp16.safetensors"])
    assert hf_folder("lllyasviel/control_v11f1p_sd15_depth", "the ControlNet") == snapshot
    # --base FILE with `default` needs only the base model's configs and tokenizer
    fake_snapshot(hf_cache, SD15, ["model_index.json", "unet/config.json", "tokenizer/vocab.json"])
    fake_snapshot(hf_cache, adapter, ["diffusion_pytorch_model.safetensors"])
    (tmp_path / "model.safetensors").write_bytes(b"not a checkpoint")
    proc = run_cli("generate", "--prompt", "a cat", "--out", tmp_path / "a.gif", "--models", "default",
                   "--backend", "t2v-zero", "--base", tmp_path / "model.safetensors")
    assert proc.returncode == 1 and "--base" in proc.stderr and "cannot read it as a checkpoint" in proc.stderr


def test_doctor_reports_what_is_missing_with_its_fetch_command(run_cli, hf_cache):
    proc = run_cli("doctor", "--json", env={"STORYREEL_MODELS": "default"})
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["ok"] is False and report["selected"] == "default"
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["torch", "cuda", "ffmpeg", "hf_cache", "preset default", "preset tiny",
                            "preset toy"]
    assert all(checks[name]["ok"] for name in ("torch", "ffmpeg", "preset tiny", "preset toy"))
    assert checks["cuda"]["ok"] == torch.cuda.is_available()
    assert "hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K --include open_clip_model.safetensors" in \
        checks["preset default"]["fix"]
    proc = run_cli("doctor", env={"STORYREEL_MODELS": "tiny"})
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1].startswith("ready: preset tiny")
    assert "get it: hf download lllyasviel/Annotators --include dpt_hybrid-midas-501f0c75.pt" in proc.stdout


def test_a_story_files_models_section(tmp_path):
    from storyreel.story.format import load_story

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.safetensors").write_bytes(b"")
    story = tmp_path / "story.yaml"
    story.write_text("models: {preset: tiny, base: models/mine.safetensors, scheduler: EulerDiscreteScheduler,\n"
                     "         controlnet: org/depth-cn}\nplots:\n  - text: A cat sleeps.\n")
    assert load_story(story).models == {"preset": "tiny", "base": str(tmp_path / "models" / "mine.safetensors"),
                                        "scheduler": "EulerDiscreteScheduler", "controlnet": "org/depth-cn"}
    story.write_text("models:\n  bse: x\nplots:\n  - text: A cat sleeps.\n")
    with pytest.raises(UserError, match=r"story.yaml:2: models: unknown field 'bse' \(did you mean 'base'\?\)"):
        load_story(story)
