"""CLIP presets: the tiny model saved as a real open_clip checkpoint in an HF-cache layout loads back
through the same code path as the pretrained preset; a missing pretrained checkpoint is one clear line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from storyreel.index import embed
from storyreel.core.errors import MissingWeightsError

FAKE_REPO = "storyreel-test/tiny-clip"


def fake_hf_cache(root, repo_id: str, filename: str, state_dict) -> None:
    """Write `state_dict` where huggingface_hub's cache lookup finds repo_id/filename."""
    from safetensors.torch import save_file

    repo = root / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    if filename.endswith(".safetensors"):
        save_file(tensors, str(snapshot / filename))
    else:
        torch.save(tensors, snapshot / filename)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(5, 90, 120, 3), dtype=np.uint8)


@pytest.mark.parametrize("filename", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_tiny_checkpoint_round_trips_through_the_pretrained_loader(hf_cache, monkeypatch, frames, filename):
    tiny = embed.load_clip("tiny")
    # A preset shaped like `default` (HF repo + checkpoint names) whose architecture is the tiny one.
    spec = dataclasses.replace(embed.CLIP_MODELS["default"], model_id="open_clip:tiny:from-cache",
                               architecture=embed.TINY_CLIP_CONFIG, hf_repo=FAKE_REPO, seed=123)
    monkeypatch.setitem(embed.CLIP_MODELS, "cached-tiny", spec)
    fake_hf_cache(hf_cache, FAKE_REPO, filename, tiny.model.state_dict())

    loaded = embed.load_clip("cached-tiny")  # seed 123 would give other weights: equality proves loading

    assert loaded.model_id == "open_clip:tiny:from-cache" and loaded.dim == tiny.dim == 64
    np.testing.assert_array_equal(loaded.embed_images(frames), tiny.embed_images(frames))
    np.testing.assert_array_equal(loaded.embed_text(["a red car", "zooms in"]), tiny.embed_text(["a red car", "zooms in"]))


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
    assert "huggingface-cli download" in message and "--models tiny" in message
