"""CLIP presets: the tiny model saved as a real open_clip checkpoint in an HF-cache layout loads back
through the same code path as the pretrained preset; a missing pretrained checkpoint is one clear line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from storyreel.core.errors import MissingWeightsError
from storyreel.core.models import ClipSpec, get_preset
from storyreel.index import embed

TINY_CLIP_CONFIG = get_preset("tiny").clip.config  # core/presets/tiny.json

FAKE_REPO = "storyreel-test/tiny-clip"


def fake_hf_cache(root, repo_id: str, filename: str, state_dict) -> None:
    """Write `state_dict` where huggingface_hub's cache lookup finds repo_id/filename."""
    from safetensors.torch import save_file

    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    if filename.endswith(".safetensors"):
        save_file(tensors, str(snapshot / filename))
    else:
        torch.save(tensors, snapshot / filename)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 90, 120, 3), dtype=np.uint8)


@pytest.mark.parametrize("filename", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_tiny_checkpoint_round_trips_through_the_pretrained_loader(hf_cache, frames, filename):
    tiny = embed.load_clip("tiny")
    # A preset shaped like `default` (pretrained tag + HF repo) whose architecture is the tiny one.
    spec = ClipSpec("tiny", pretrained="from-cache", hf_repo=FAKE_REPO, config=TINY_CLIP_CONFIG, seed=123)
    fake_hf_cache(hf_cache, FAKE_REPO, filename, tiny.model.state_dict())

    # seed 123 would give other weights: equality proves loading
    loaded = embed.load_clip(dataclasses.replace(get_preset("default"), clip=spec))

    assert loaded.model_id == "open_clip:tiny:from-cache" and loaded.dim == tiny.dim == 64
    np.testing.assert_array_equal(loaded.embed_images(frames), tiny.embed_images(frames))
    texts = ["a red car", "zooms in"]
    np.testing.assert_array_equal(loaded.embed_text(texts), tiny.embed_text(texts))


def test_hf_hub_clip_takes_architecture_preprocessing_and_tokenizer_from_its_open_clip_config(hf_cache, frames):
    tiny = embed.load_clip("tiny")
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize_mode": "squash", "interpolation": "bilinear"}
    config = {"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": preprocess}
    fake_hf_cache(hf_cache, FAKE_REPO, "open_clip_model.safetensors", tiny.model.state_dict())
    snapshot = hf_cache / f"models--{FAKE_REPO.replace('/', '--')}" / "snapshots" / ("0" * 40)
    (snapshot / "open_clip_config.json").write_text(json.dumps(config))

    hub = embed.clip_embedder(ClipSpec(f"hf-hub:{FAKE_REPO}", seed=123))

    assert hub.model_id == f"open_clip:hf-hub:{FAKE_REPO}"
    assert (hub.image_size, hub.resize_mode, hub.interpolation) == ((64, 64), "squash", "bilinear")
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    squashed = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True).clamp(0, 1)
    torch.testing.assert_close(hub.preprocess(frames), (squashed - 0.5) / 0.5)
    np.testing.assert_array_equal(hub.embed_text(["a red car"]), tiny.embed_text(["a red car"]))
    assert not np.allclose(hub.embed_images(frames), tiny.embed_images(frames))  # other preprocessing, same weights


def test_tiny_embeddings_are_deterministic_and_normalized(frames):
    a, b = embed.load_clip("tiny"), embed.load_clip("tiny")
    assert a.model_id == "open_clip:tiny:seed0"
    img = a.embed_images(frames)
    assert img.shape == (5, 64) and img.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(img, b.embed_images(frames))
    txt = a.embed_text(["a dog on a beach"])
    assert txt.shape == (1, 64)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    # The real CLIP BPE tokenizer: different words give different token ids.
    assert not torch.equal(a.tokenizer(["dog"]), a.tokenizer(["cat"]))


def test_missing_default_weights_is_one_clear_line(hf_cache):
    with pytest.raises(MissingWeightsError) as err:
        embed.load_clip("default")
    message = str(err.value)
    assert "\n" not in message
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/open_clip_model.safetensors" in message
    assert "`hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K --include open_clip_model.safetensors`" in message
    assert "--models toy" in message
