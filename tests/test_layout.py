"""Layout control (generation/layout.py) on the tiny models of both backends: box arithmetic, where the
entity's words act (measured by a probe standing in for torch's attention kernel), strength 0 is a no-op,
masks of self- and temporal attention, energy guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storyreel.generation import GenerationSettings, Steering, StructureGuidedPipeline
from storyreel.generation.components import create_components
from storyreel.generation.layout import (
    Layout,
    LayoutEntity,
    box_problem,
    interpolate_boxes,
    snap_box,
    spread_boxes,
    token_positions,
)
from storyreel.generation.layout_attention import LayoutControl, layout_attention
from storyreel.generation.zero import StructureGuidedZeroPipeline
from storyreel.testing.probes import ForwardCounter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPT = "a red ball rolling on grass"
BOX = (0.0, 0.0, 0.5, 0.5)  # a quarter of the frame: 16 of the 8x8 latent pixels, 4 of the 4x4
BALL = Layout((LayoutEntity("ball", "a red ball", {0: BOX}),), strength=0.5)
SETTINGS = GenerationSettings(frames=4, height=64, width=64, steps=4, seed=0, tau=0.5)


@pytest.fixture(scope="module")
def pipes():
    animatediff = StructureGuidedPipeline.from_components(create_components("tiny"))
    zero = StructureGuidedZeroPipeline.from_components(create_components("tiny", backend="t2v-zero"))
    for pipe in (animatediff, zero):
        pipe.set_progress_bar_config(disable=True)
    return {"animatediff": animatediff, "t2v-zero": zero}


def ramp_depth(frames=4, size=64):
    x = torch.linspace(0, 1, size)
    return torch.stack([((x + 0.05 * k) % 1.0)[None].expand(size, size) for k in range(frames)])[:, None].expand(
        -1, 3, -1, -1).contiguous()


def test_box_checks_snapping_and_interpolation():
    assert box_problem([0.1, 0.2, 0.5, 0.9]) is None
    assert box_problem([0.1, 0.2, 1.2, 0.9]) == "1.2 is outside [0, 1] (boxes are fractions of the frame)"
    assert box_problem([0.6, 0.2, 0.4, 0.9]) == "x0 0.6 >= x1 0.4"
    assert box_problem([0.1, 0.5, 0.4, 0.5]) == "y0 0.5 >= y1 0.5"
    assert box_problem([0.1, 0.2]) == "expected [x0, y0, x1, y1] (four numbers), got [0.1, 0.2]"
    assert snap_box((0.12, 0.33, 0.46, 0.99)) == (0.1, 0.35, 0.45, 1.0)
    assert snap_box((0.5, 0.5, 0.51, 0.5)) == (0.5, 0.5, 0.55, 0.55)  # never empty
    assert spread_boxes(2) == [(0.05, 0.25, 0.45, 0.95), (0.55, 0.25, 0.95, 0.95)]
    boxes = interpolate_boxes({2: (0.0, 0.0, 0.5, 0.5), 6: (0.5, 0.0, 1.0, 0.5)}, 8)
    np.testing.assert_allclose(boxes[:, 0], [0, 0, 0, 0.125, 0.25, 0.375, 0.5, 0.5])  # held outside the keys
    np.testing.assert_allclose(boxes[:, 3], 0.5)


def test_token_positions_find_the_phrase_or_its_words(pipes):
    tokenizer = pipes["animatediff"].tokenizer
    assert token_positions(tokenizer, PROMPT, "a red ball") == [1, 2, 3]
    assert token_positions(tokenizer, PROMPT, "the red ball") == [2, 3]  # words, articles left out
    assert token_positions(tokenizer, PROMPT, "a cat") == []


def test_masks_follow_regions_and_paths():
    layout = Layout((LayoutEntity("a", "x", {0: (0.0, 0.0, 0.5, 1.0), 1: (0.5, 0.0, 1.0, 1.0)}),), strength=1.0)
    control = LayoutControl(layout, frames=2, latent_size=(2, 2), positions=[[2]], num_steps=1, cfg=True)
    assert control.labels(2, 2, 2).tolist() == [[0, -1, 0, -1], [-1, 0, -1, 0]]
    spatial = control.spatial_mask(rows=4, tokens=4, key_frame_one=False, dtype=torch.float32, device="cpu") == 0
    assert spatial.shape == (4, 1, 4, 4) and spatial[0, 0, 0].tolist() == [True, False, True, False]
    frame_one_keys = control.spatial_mask(rows=4, tokens=4, key_frame_one=True, dtype=torch.float32, device="cpu")
    assert (frame_one_keys[1, 0, 1] == 0).tolist() == [True, False, True, False]  # frame 2's box, frame 1's keys
    temporal = control.temporal_mask(rows=8, frames=2, dtype=torch.float32, device="cpu")
    assert temporal.shape == (8, 1, 2, 2)  # one row per pixel of each CFG half
    assert (temporal[0, 0] == 0).tolist() == [[True, False], [False, True]]  # pixel 0: in the box at frame 1 only
    still = Layout((LayoutEntity("a", "x", {0: (0.0, 0.0, 0.5, 1.0)}),), strength=1.0)
    assert LayoutControl(still, 2, (2, 2), [[2]], 1, cfg=True).temporal_mask(8, 2, torch.float32, "cpu") is None
    cross = control.cross_mask(rows=4, tokens=4, keys=4, dtype=torch.float32, device="cpu")
    assert cross.shape == (4, 1, 4, 4) and (cross[:2] == 0).all()  # broadcast over heads; the negative half is free
    allowed = (cross[2, 0] == 0).tolist()  # frame 1, conditional: pixel 0 in the box, pixel 1 outside
    assert allowed[0] == [True, False, True, False] and allowed[1] == [True, True, False, True]


class CrossAttentionProbe:
    """Stands in for torch's scaled_dot_product_attention (which diffusers' processors and the layout
    processors both call) and measures, per cross-attention call (keys = the text's tokens), the share of
    the entity words' attention mass (conditional half) that falls inside the box, with whatever mask
    the call carries — inside `unet` only (the ControlNet's and the text encoder's calls are not counted)."""

    def __init__(self, sdpa, unet, keys, positions, shares):
        self.sdpa, self.keys, self.positions, self.shares = sdpa, keys, positions, shares
        self.in_unet = False
        self.hooks = (unet.register_forward_pre_hook(lambda *_: setattr(self, "in_unet", True)),
                      unet.register_forward_hook(lambda *_: setattr(self, "in_unet", False)))

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()

    def __call__(self, query, key, value, attn_mask=None, **kw):
        if self.in_unet and key.shape[-2] == self.keys:
            scores = query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5
            if attn_mask is not None:
                scores = scores + attn_mask
            rows, tokens = scores.shape[0], scores.shape[2]
            mass = scores.softmax(-1)[rows // 2:, ..., self.positions].sum(-1).mean(1)  # (frames, tokens)
            side = int(tokens ** 0.5)
            inside = torch.zeros(side, side, dtype=torch.bool)
            inside[:side // 2, :side // 2] = True
            self.shares.append(float((mass * inside.flatten()).sum() / mass.sum()))
        return self.sdpa(query, key, value, attn_mask=attn_mask, **kw)


@pytest.mark.parametrize("backend", ["animatediff", "t2v-zero"])
def test_entity_attention_moves_into_its_box_and_strength_zero_is_a_no_op(pipes, backend, monkeypatch):
    pipe = pipes[backend]
    positions = token_positions(pipe.tokenizer, PROMPT, "a red ball")
    shares = []
    probe = CrossAttentionProbe(torch.nn.functional.scaled_dot_product_attention, pipe.unet,
                                pipe.tokenizer.model_max_length, positions, shares)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", probe)
    cross_layers = sum(1 for n in pipe.unet.attn_processors if n.endswith("attn2.processor") and "motion" not in n)
    try:
        free = pipe(PROMPT, ramp_depth(), SETTINGS, output_type="float")
        free_shares, shares[:] = list(shares), []
        steered = pipe(PROMPT, ramp_depth(), SETTINGS, output_type="float", steering=Steering(layout=BALL))
        steered_shares, shares[:] = list(shares), []
        off = pipe(PROMPT, ramp_depth(), SETTINGS, output_type="float",
                   steering=Steering(layout=Layout(BALL.entities, strength=0.0)))
    finally:
        probe.remove()
        monkeypatch.undo()
    # Calls per step: every cross-attention layer once (t2v-zero denoises every frame at once too).
    per_step = len(free_shares) // SETTINGS.steps
    assert per_step == cross_layers and len(steered_shares) == len(free_shares)
    controlled = steered_shares[:2 * per_step]  # strength 0.5 of 4 steps: steps 0 and 1
    assert np.mean(free_shares[:2 * per_step]) == pytest.approx(0.25, abs=0.08)  # about the box's area
    assert min(controlled) >= 0.8
    assert np.mean(steered_shares[2 * per_step:]) < 0.5  # after the controlled steps attention is free again
    assert steered.settings["layout"]["controlled_steps"] == 2
    assert steered.settings["layout"]["token_positions"] == [[1, 2, 3]]
    assert not np.array_equal(free.frames, steered.frames)
    np.testing.assert_array_equal(off.frames, free.frames)  # strength 0: bit-identical frames
    assert "layout" not in free.settings


def test_layout_runs_alongside_the_depth_clamp(pipes):
    pipe = pipes["animatediff"]
    counter = ForwardCounter(pipe.controlnet)
    try:
        out = pipe(PROMPT, ramp_depth(), SETTINGS.replace(tau=0.25), output_type="float",
                   steering=Steering(layout=Layout(BALL.entities, strength=1.0)))
    finally:
        counter.restore()
    assert counter.calls == out.structure_forward_passes == 1  # τ = 0.25 of 4 steps: the ControlNet ran once
    assert np.isfinite(out.frames).all()


def test_energy_guidance_lowers_the_box_energy(pipes):
    pipe = pipes["t2v-zero"]
    control = LayoutControl(Layout(BALL.entities, strength=1.0, guidance=50.0), 4, (8, 8), [[1, 2, 3]], 1, cfg=True)
    embeddings = pipe.encode_prompt(PROMPT).repeat_interleave(4, dim=0)
    latents = torch.randn((4, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    model_input = torch.cat([latents] * 2)
    t = torch.tensor(900)

    def energy(x):
        with torch.no_grad():
            control.cond_only, control.energy = True, None
            pipe.unet(x[4:], t, encoder_hidden_states=embeddings[4:])
            value, control.cond_only, control.energy = float(control.energy), False, None
        return value

    previous = pipe.unet.attn_processors

    with layout_attention(pipe.unet, control):
        control.begin(0, range(4))
        guided = control.guide(pipe.unet, model_input, t, embeddings)
        before, after = energy(model_input), energy(guided)
    assert pipe.unet.attn_processors.keys() == previous.keys()
    assert torch.equal(guided[:4], guided[4:]) and not torch.equal(guided, model_input)
    assert after < before


@pytest.mark.parametrize("backend", ["animatediff", "t2v-zero"])
def test_energy_guidance_runs_inside_both_pipelines(pipes, backend):
    pipe = pipes[backend]
    guided = Layout(BALL.entities, strength=0.5, guidance=50.0)
    settings = SETTINGS.replace(steps=2)  # step 0 guided
    plain = pipe(PROMPT, ramp_depth(), settings, output_type="float",
                 steering=Steering(layout=Layout(BALL.entities, strength=0.5)))
    out = pipe(PROMPT, ramp_depth(), settings, output_type="float", steering=Steering(layout=guided))
    assert out.settings["layout"]["guidance"] == 50.0 and np.isfinite(out.frames).all()
    assert not np.array_equal(out.frames, plain.frames)  # the guided steps moved the latents
