"""The model registry (storyreel.core.models, presets read from core/presets/*.json) and `storyreel models`,
which lists it with where each component's weights are looked for in the Hugging Face cache."""

from __future__ import annotations

import dataclasses
import json

import pytest

from storyreel.cli import main
from storyreel.core.errors import UserError
from storyreel.core.models import ClipSpec, get_preset, list_presets


def test_one_table_names_every_component_and_the_generator_defaults(monkeypatch):
    default = get_preset("default")
    assert default.clip.model_id == "open_clip:ViT-B-32:laion2b_s34b_b79k"
    assert default.clip.weights_repo == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert default.depth == "dpt_hybrid_384" and get_preset("tiny").depth == "tiny"
    g = default.generator
    assert (g.height, g.width, g.frames, g.steps, g.cfg, g.train_size) == (512, 512, 16, 25, 7.5, 256)
    assert g.scheduler.name == "DDIMScheduler" and g.scheduler.config["beta_schedule"] == "linear"
    t = get_preset("tiny").generator
    assert (t.height, t.width, t.frames, t.steps, t.cfg, t.train_size, t.seed) == (64, 64, 16, 4, 7.5, 64, 0)
    assert get_preset("tiny").clip.model_id == "open_clip:tiny:seed0" and get_preset("tiny").clip.weights_repo is None

    monkeypatch.setenv("STORYREEL_MODELS", "tiny")
    presets = list_presets()
    assert get_preset() is presets["tiny"] and get_preset("default") is presets["default"]
    with pytest.raises(UserError, match="unknown model preset 'huge'.*choose one of default, tiny"):
        get_preset("huge")
    # Swapping one component is one replace; the result passes through every preset lookup.
    siglip = dataclasses.replace(default, clip=ClipSpec("hf-hub:timm/ViT-B-16-SigLIP"))
    assert get_preset(siglip) is siglip and siglip.clip.weights_repo == "timm/ViT-B-16-SigLIP"
    assert siglip.clip.model_id == "open_clip:hf-hub:timm/ViT-B-16-SigLIP" and siglip.depth == default.depth


def test_models_command_lists_presets_components_and_where_they_are_looked_for(hf_cache, capsys, monkeypatch):
    monkeypatch.delenv("STORYREEL_MODELS", raising=False)
    # One file of `default` in the cache: the depth checkpoint.
    snapshot = hf_cache / "models--lllyasviel--Annotators" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "dpt_hybrid-midas-501f0c75.pt").write_bytes(b"weights")
    (hf_cache / "models--lllyasviel--Annotators" / "refs").mkdir()
    (hf_cache / "models--lllyasviel--Annotators" / "refs" / "main").write_text("0" * 40)

    assert main(["models", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    assert report["selected"] == "default" and report["hf_cache"] == str(hf_cache)
    assert list(report["presets"]) == ["default", "tiny", "toy"]
    tiny, default = report["presets"]["tiny"]["components"], report["presets"]["default"]["components"]
    assert set(tiny) == set(default) == {"clip", "depth", "base", "motion_adapter", "controlnet"}
    for component in tiny.values():
        assert component["present"] and component["repo"] is None and component["where"] == "built in code (seed 0)"
    assert tiny["clip"]["id"] == "open_clip:tiny:seed0" and tiny["depth"]["id"] == "tiny"

    clip = default["clip"]
    assert clip["id"] == "open_clip:ViT-B-32:laion2b_s34b_b79k"
    assert clip["repo"] == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert "open_clip_model.safetensors" in clip["files"] and clip["present"] is False and clip["path"] is None
    for role, repo in [("base", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
                       ("motion_adapter", "guoyww/animatediff-motion-adapter-v1-5-3"),
                       ("controlnet", "lllyasviel/control_v11f1p_sd15_depth")]:
        assert default[role]["id"] == default[role]["repo"] == repo and default[role]["present"] is False
    depth = default["depth"]
    assert depth["id"] == "dpt_hybrid_384" and depth["repo"] == "lllyasviel/Annotators"
    assert depth["present"] is True and depth["path"].endswith("dpt_hybrid-midas-501f0c75.pt")
    assert report["presets"]["default"]["defaults"] == {"height": 512, "width": 512, "frames": 16, "steps": 25,
                                                        "cfg": 7.5, "train_size": 256}
    assert report["presets"]["default"]["scheduler"]["name"] == "DDIMScheduler"

    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "default  (selected)" in text and "missing  HF cache laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in text
    assert "present  HF cache lllyasviel/Annotators: dpt_hybrid-midas-501f0c75.pt" in text
