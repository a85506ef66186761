"""Official MiDaS checkpoints load strictly on the installed timm.

The state dicts here are written from the MiDaS source layout (isl-org/MiDaS midas/dpt_depth.py,
blocks.py, vit.py, backbones/beit.py on timm 0.6.12), *not* from our model, so the test fails if
our network or key remap drifts from the real files.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storyreel.core.errors import UserError
from storyreel.depth.checkpoint import official_state_dict
from storyreel.depth.model import create_depth_model


def _decoder_layout(level_channels, features=256, vit_dim=None, cnn_levels=0):
    """act_postprocess{1-4} (transformer levels only) and scratch.* of a DPT depth model."""
    shapes = {}
    resample = {1: ("convT", 4), 2: ("convT", 2), 3: None, 4: ("conv", 3)}
    for level, ch in enumerate(level_channels, start=1):
        if level > cnn_levels:
            p = f"pretrained.act_postprocess{level}"
            shapes[f"{p}.0.project.0.weight"] = (vit_dim, 2 * vit_dim)
            shapes[f"{p}.0.project.0.bias"] = (vit_dim,)
            shapes[f"{p}.3.weight"] = (ch, vit_dim, 1, 1)
            shapes[f"{p}.3.bias"] = (ch,)
            if resample[level]:
                k = resample[level][1]
                shapes[f"{p}.4.weight"] = (ch, ch, k, k)
                shapes[f"{p}.4.bias"] = (ch,)
        shapes[f"scratch.layer{level}_rn.weight"] = (features, ch, 3, 3)
        r = f"scratch.refinenet{level}"
        for unit in ("resConfUnit1", "resConfUnit2"):  # refinenet4.resConfUnit1 exists, unused
            for conv in ("conv1", "conv2"):
                shapes[f"{r}.{unit}.{conv}.weight"] = (features, features, 3, 3)
                shapes[f"{r}.{unit}.{conv}.bias"] = (features,)
        shapes[f"{r}.out_conv.weight"] = (features, features, 1, 1)
        shapes[f"{r}.out_conv.bias"] = (features,)
    for idx, (cout, cin, k) in {0: (features // 2, features, 3), 2: (32, features // 2, 3), 4: (1, 32, 1)}.items():
        shapes[f"scratch.output_conv.{idx}.weight"] = (cout, cin, k, k)
        shapes[f"scratch.output_conv.{idx}.bias"] = (cout,)
    return shapes


def _vit_blocks(prefix, depth, dim, qkv_bias=True):
    shapes = {}
    for i in range(depth):
        b = f"{prefix}.blocks.{i}"
        for norm in ("norm1", "norm2"):
            shapes[f"{b}.{norm}.weight"] = shapes[f"{b}.{norm}.bias"] = (dim,)
        shapes[f"{b}.attn.qkv.weight"] = (3 * dim, dim)
        if qkv_bias:
            shapes[f"{b}.attn.qkv.bias"] = (3 * dim,)
        shapes[f"{b}.attn.proj.weight"] = (dim, dim)
        shapes[f"{b}.attn.proj.bias"] = (dim,)
        shapes[f"{b}.mlp.fc1.weight"] = (4 * dim, dim)
        shapes[f"{b}.mlp.fc1.bias"] = (4 * dim,)
        shapes[f"{b}.mlp.fc2.weight"] = (dim, 4 * dim)
        shapes[f"{b}.mlp.fc2.bias"] = (dim,)
    return shapes


def dpt_hybrid_layout():
    """dpt_hybrid-midas-501f0c75.pt: timm vit_base_resnet50_384 (ResNetV2 3-4-9 + ViT-B/16 at 384)."""
    m = "pretrained.model"
    shapes = {f"{m}.cls_token": (1, 1, 768), f"{m}.pos_embed": (1, 577, 768)}
    rn = f"{m}.patch_embed.backbone"
    shapes[f"{rn}.stem.conv.weight"] = (64, 3, 7, 7)
    shapes[f"{rn}.stem.norm.weight"] = shapes[f"{rn}.stem.norm.bias"] = (64,)
    cin = 64
    for s, (depth, mid) in enumerate([(3, 64), (4, 128), (9, 256)]):
        out = mid * 4
        for j in range(depth):
            b = f"{rn}.stages.{s}.blocks.{j}"
            if j == 0:
                shapes[f"{b}.downsample.conv.weight"] = (out, cin, 1, 1)
                shapes[f"{b}.downsample.norm.weight"] = shapes[f"{b}.downsample.norm.bias"] = (out,)
            shapes[f"{b}.conv1.weight"] = (mid, cin if j == 0 else out, 1, 1)
            shapes[f"{b}.conv2.weight"] = (mid, mid, 3, 3)
            shapes[f"{b}.conv3.weight"] = (out, mid, 1, 1)
            for n, c in (("norm1", mid), ("norm2", mid), ("norm3", out)):
                shapes[f"{b}.{n}.weight"] = shapes[f"{b}.{n}.bias"] = (c,)
        cin = out
    shapes[f"{m}.patch_embed.proj.weight"] = (768, 1024, 1, 1)
    shapes[f"{m}.patch_embed.proj.bias"] = (768,)
    shapes.update(_vit_blocks(m, 12, 768))
    shapes[f"{m}.norm.weight"] = shapes[f"{m}.norm.bias"] = (768,)
    shapes[f"{m}.head.weight"], shapes[f"{m}.head.bias"] = (1000, 768), (1000,)
    shapes.update(_decoder_layout((256, 512, 768, 768), vit_dim=768, cnn_levels=2))
    return shapes


def dpt_beit_large_512_layout():
    """dpt_beit_large_512.pt: timm beit_large_patch16_512, saved when relative_position_index was
    still a persistent buffer (current timm does not create these keys)."""
    m, dim, window = "pretrained.model", 1024, 32
    shapes = {f"{m}.cls_token": (1, 1, dim), f"{m}.patch_embed.proj.weight": (dim, 3, 16, 16),
              f"{m}.patch_embed.proj.bias": (dim,)}
    shapes.update(_vit_blocks(m, 24, dim, qkv_bias=False))
    for i in range(24):
        b = f"{m}.blocks.{i}"
        shapes[f"{b}.gamma_1"] = shapes[f"{b}.gamma_2"] = (dim,)
        shapes[f"{b}.attn.q_bias"] = shapes[f"{b}.attn.v_bias"] = (dim,)
        shapes[f"{b}.attn.relative_position_bias_table"] = ((2 * window - 1) ** 2 + 3, 16)
        shapes[f"{b}.attn.relative_position_index"] = (window * window + 1, window * window + 1)
    shapes[f"{m}.fc_norm.weight"] = shapes[f"{m}.fc_norm.bias"] = (dim,)
    shapes[f"{m}.head.weight"], shapes[f"{m}.head.bias"] = (1000, dim), (1000,)
    shapes.update(_decoder_layout((256, 512, 1024, 1024), vit_dim=dim))
    return shapes


def random_state_dict(shapes, seed=0, compact=False):
    """Random tensors with exactly these names and shapes. compact: one random row per tensor,
    broadcast over the leading dims (torch.save then stores only the row), so a 345M-parameter
    layout costs megabytes instead of 1.4 GB while keeping every name and shape exact."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        full = shape if not compact else shape[-1:]
        if key.endswith("relative_position_index"):
            value = torch.randint(0, 100, full, generator=gen)
        else:
            value = torch.randn(full, generator=gen) * 0.02
        state[key] = value.expand(shape) if compact else value
    return state


@pytest.fixture(scope="module")
def hybrid_checkpoint(tmp_path_factory):
    state = random_state_dict(dpt_hybrid_layout())
    path = tmp_path_factory.mktemp("ckpt") / "dpt_hybrid-midas-501f0c75.pt"
    torch.save(state, path)
    return path, state


def test_official_hybrid_checkpoint_loads_strictly(hybrid_checkpoint):
    path, state = hybrid_checkpoint
    model = create_depth_model("dpt_hybrid_384", weights=path, device="cpu")
    ours = official_state_dict(model.net)
    assert set(ours) == set(state)
    for key in ("pretrained.model.patch_embed.backbone.stages.2.blocks.8.conv3.weight",
                "pretrained.act_postprocess4.4.weight", "scratch.refinenet4.resConfUnit1.conv1.weight",
                "scratch.output_conv.4.bias", "pretrained.model.pos_embed"):
        assert torch.equal(ours[key], state[key]), key
    # Non-square input: position embeddings are resized, output has the input's size.
    with torch.inference_mode():
        out = model.net(torch.zeros(1, 3, 64, 96))
    assert out.shape == (1, 64, 96) and torch.isfinite(out).all()
    assert model.model_id.startswith("dpt_hybrid_384:dpt_hybrid-midas-501f0c75-")


def test_extra_or_missing_key_is_named(tmp_path):
    state = random_state_dict(dpt_hybrid_layout(), compact=True)
    extra = dict(state, **{"scratch.refinenet5.out_conv.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(UserError, match=r"unexpected keys scratch\.refinenet5\.out_conv\.weight") as err:
        create_depth_model("dpt_hybrid_384", weights=tmp_path / "extra.pt", device="cpu")
    assert "\n" not in str(err.value)

    missing = {k: v for k, v in state.items() if k != "pretrained.act_postprocess3.3.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(UserError, match=r"missing keys pretrained\.act_postprocess3\.3\.bias"):
        create_depth_model("dpt_hybrid_384", weights=tmp_path / "missing.pt", device="cpu")

    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(UserError, match=r"cannot read depth checkpoint .*corrupt\.pt") as err:
        create_depth_model("dpt_hybrid_384", weights=tmp_path / "corrupt.pt", device="cpu")
    assert "\n" not in str(err.value)

    # The hybrid file is not a dpt_large_384 file: the mismatch is named, nothing loads.
    with pytest.raises(UserError, match=r"does not match dpt_large_384: missing keys"):
        create_depth_model("dpt_large_384", weights=tmp_path / "missing.pt", device="cpu")


def test_official_beit_checkpoint_with_keys_timm_no_longer_saves(tmp_path):
    state = random_state_dict(dpt_beit_large_512_layout(), seed=1, compact=True)
    path = tmp_path / "dpt_beit_large_512.pt"
    torch.save(state, path)
    checks = {k: state[k] for k in ("pretrained.model.blocks.23.attn.relative_position_bias_table",
                                    "pretrained.act_postprocess1.4.weight", "scratch.layer4_rn.weight")}
    model = create_depth_model("dpt_beit_large_512", weights=path, device="cpu")
    ours = official_state_dict(model.net)
    assert not any("relative_position_index" in k for k in ours)  # dropped by the documented remap
    for key, value in checks.items():
        assert torch.equal(ours[key], value)
    # the recomputed buffer is the real index, not the file's (random) one
    index = model.net.backbone.blocks[0].attn.relative_position_index
    assert index.shape == (1025, 1025) and int(index[0, 0]) == 3971 == (2 * 32 - 1) ** 2 + 2


def test_tiny_roundtrip_and_no_resampling_at_network_size(tmp_path):
    tiny = create_depth_model("tiny", device="cpu")
    torch.save(official_state_dict(tiny.net), tmp_path / "tiny.pt")
    loaded = create_depth_model("tiny", weights=tmp_path / "tiny.pt", device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    depth = loaded.predict(frames)
    assert depth.dtype == np.float32 and depth.shape == (3, 64, 64)
    np.testing.assert_array_equal(depth, tiny.predict(frames))
    np.testing.assert_allclose(loaded.predict(frames, batch_size=2), depth, rtol=1e-5)
    # 64 x 64 is tiny's network size: the network sees the frames exactly, no resampling either way
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
    with torch.inference_mode():
        np.testing.assert_array_equal(depth, tiny.net(x).numpy())
    assert loaded.predict_calls == 2 and loaded.frames_predicted == 6
    # other sizes come back at the frame size
    assert tiny.predict(frames[:, :40, :50]).shape == (3, 40, 50)


def test_beit_blocks_match_timm_and_run_on_non_square_input():
    """Our BEiT block (relative position bias resampled per input) equals timm's own block at the
    native window, and the network runs on a non-square input. Small BEiT, same code path."""
    from storyreel.depth.dpt import DPT
    from storyreel.depth.registry import DepthModelConfig

    config = DepthModelConfig(
        name="beit_small_test", backbone="beit_base_patch16_224", kind="beit", hooks=(0, 1, 2, 3),
        level_channels=(16, 32, 64, 64), input_size=64, features=32,
        backbone_kwargs=dict(img_size=64, embed_dim=32, depth=4, num_heads=2, num_classes=0),
    )
    torch.manual_seed(0)
    net = DPT(config).eval()
    with torch.no_grad():
        for block in net.backbone.blocks:
            block.attn.relative_position_bias_table.normal_()
        x = torch.randn(2, 3, 64, 64)
        net._grid = (4, 4)
        tokens, _ = net._embed(x)
        block = net.backbone.blocks[0]
        torch.testing.assert_close(net._beit_block(block, tokens), block(tokens), rtol=1e-4, atol=1e-5)
        out = net(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 64, 96) and torch.isfinite(out).all()
