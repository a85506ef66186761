"""Layout control's attention processors: `LayoutControl` (one call's boxes, masks and guidance state)
and `LayoutAttnProcessor`, which wraps a UNet's processors (generation/layout.py has the method and
the plan data; this module is what needs torch).
"""

from __future__ import annotations

import torch
from torch.nn import functional

from storyreel.generation.attention import installed_processors
from storyreel.generation.layout import Layout, controlled_steps

# ------------------------------------------------------------------------------------- control

class LayoutControl:
    """One call's layout state, shared by every layout processor: the boxes of each frame, the entity
    token positions, which steps are controlled, the frames of the window being denoised, the masks
    (built once per resolution and window) and, during a guidance pass, the recorded energy."""

    def __init__(self, layout: Layout, frames: int, latent_size: tuple[int, int], positions: list[list[int]],
                 num_steps: int, cfg: bool):
        self.layout = layout
        self.boxes = torch.from_numpy(layout.frame_boxes(frames)).float()  # (E, F, 4)
        self.latent_size = latent_size
        self.positions = positions
        self.steps = controlled_steps(num_steps, layout.strength)
        self.guided = [s and layout.guidance > 0 for s in self.steps]
        self.cfg = cfg
        self.active = False
        self.frame_ids: tuple[int, ...] = tuple(range(frames))
        self.cond_only = False  # a guidance pass runs the conditional half alone
        self.energy: torch.Tensor | None = None  # accumulated during a guidance pass
        self._masks: dict = {}

    @property
    def any_step(self) -> bool:
        return any(self.steps) and bool(self.layout.entities)

    def begin(self, step: int, frame_ids) -> None:
        """Called before each model call: whether step `step` is controlled, and which frames it holds."""
        self.active = self.steps[step] and bool(self.layout.entities)
        frame_ids = tuple(frame_ids)
        if frame_ids != self.frame_ids:
            self.frame_ids, self._masks = frame_ids, {}

    @property
    def videos(self) -> int:
        return 2 if self.cfg and not self.cond_only else 1

    # -- geometry ------------------------------------------------------------------------------

    def grid(self, tokens: int) -> tuple[int, int]:
        """(h, w) of a UNet level with `tokens` pixels (the latent size halved, rounding up, per level)."""
        h, w = self.latent_size
        while h * w > tokens and h > 1:
            h, w = (h + 1) // 2, (w + 1) // 2
        if h * w != tokens:
            raise ValueError(f"cannot place {tokens} attention tokens on a {self.latent_size} latent")
        return h, w

    def inside(self, h: int, w: int, frames: int) -> torch.Tensor:
        """(E, frames, h·w) bool: pixel centres inside each entity's box, for the window's first `frames`."""
        key = ("inside", h, w, frames)
        if key not in self._masks:
            ids = list(self.frame_ids[:frames])
            boxes = self.boxes[:, ids]  # (E, f, 4)
            ys = (torch.arange(h) + 0.5) / h
            xs = (torch.arange(w) + 0.5) / w
            x_in = (xs >= boxes[..., 0:1]) & (xs < boxes[..., 2:3])  # (E, f, w)
            y_in = (ys >= boxes[..., 1:2]) & (ys < boxes[..., 3:4])  # (E, f, h)
            self._masks[key] = (y_in[..., :, None] & x_in[..., None, :]).flatten(-2)
        return self._masks[key]

    def labels(self, h: int, w: int, frames: int) -> torch.Tensor:
        """(frames, h·w) long: the region of each pixel, the last (top-most) entity holding it, else −1."""
        key = ("labels", h, w, frames)
        if key not in self._masks:
            inside = self.inside(h, w, frames)
            labels = torch.full(inside.shape[1:], -1, dtype=torch.long)
            for e in range(inside.shape[0]):
                labels[inside[e]] = e
            self._masks[key] = labels
        return self._masks[key]

    # -- masks ---------------------------------------------------------------------------------

    def cross_mask(self, rows: int, tokens: int, keys: int, dtype, device) -> torch.Tensor | None:
        """Additive (rows, 1, tokens, keys) mask for cross-attention (broadcast over heads; the negative
        prompt's rows all zeros), or None when no entity has words."""
        if not any(self.positions):
            return None
        frames = rows // self.videos
        h, w = self.grid(tokens)
        key = ("cross", h, w, frames, keys, dtype, device, self.videos)
        if key not in self._masks:
            inside = self.inside(h, w, frames)  # (E, f, q)
            entity_words = torch.zeros(len(self.positions), keys, dtype=torch.bool)
            for e, positions in enumerate(self.positions):
                entity_words[e, [p for p in positions if p < keys]] = True
            any_words = entity_words.any(0)
            in_any = inside.any(0)  # (f, q)
            # entity pixels: start token + the words of every entity holding them
            allowed = (inside[..., None] & entity_words[:, None, None, :]).any(0)  # (f, q, keys)
            allowed[..., 0] = True
            # background pixels: every word but the entities'
            allowed = torch.where(in_any[..., None], allowed, ~any_words)
            if self.videos == 2:  # the negative prompt's half stays unmasked
                allowed = torch.cat([torch.ones_like(allowed), allowed])
            self._masks[key] = _additive(allowed[:, None], dtype, device)
        return self._masks[key]

    def spatial_mask(self, rows: int, tokens: int, key_frame_one: bool, dtype, device) -> torch.Tensor:
        """Additive (rows, 1, tokens, tokens) mask: same region only (keys from frame 1 with cross-frame
        attention)."""
        frames = rows // self.videos
        h, w = self.grid(tokens)
        key = ("spatial", h, w, frames, key_frame_one, self.videos, dtype, device)
        if key not in self._masks:
            labels = self.labels(h, w, frames)
            key_labels = labels[:1].expand_as(labels) if key_frame_one else labels
            same = labels[:, :, None] == key_labels[:, None, :]  # (f, q, k)
            self._masks[key] = _additive(same.repeat(self.videos, 1, 1)[:, None], dtype, device)
        return self._masks[key]

    def temporal_mask(self, rows: int, frames: int, dtype, device) -> torch.Tensor | None:
        """Additive (rows, 1, frames, frames) mask for the motion modules' (videos·h·w, frames) batches:
        each pixel attends to the frames where it is in the same region; None when no pixel changes
        region (then every row attends to every frame anyway). One masked call over all rows is cheaper
        on CPU than an unmasked call plus a masked one on the moving rows (scripts/bench_layout.py)."""
        pixels = rows // self.videos
        h, w = self.grid(pixels)
        key = ("temporal", h, w, frames, self.videos, dtype, device)
        if key not in self._masks:
            labels = self.labels(h, w, frames).T  # (q, f)
            if bool((labels == labels[:, :1]).all()):
                self._masks[key] = None
            else:
                same = labels[:, :, None] == labels[:, None, :]  # (q, f, f)
                self._masks[key] = _additive(same.repeat(self.videos, 1, 1)[:, None], dtype, device)
        return self._masks[key]

    # -- energy guidance -----------------------------------------------------------------------

    def record(self, probabilities: torch.Tensor, tokens: int) -> None:
        """Add a cross-attention layer's energy: probabilities (rows, heads, tokens, keys), all conditional."""
        h, w = self.grid(tokens)
        frames = probabilities.shape[0]
        inside = self.inside(h, w, frames).to(probabilities.device)
        energy = probabilities.new_zeros(())
        for e, positions in enumerate(self.positions):
            if not positions:
                continue
            mass = probabilities[..., positions].sum(-1).mean(1)  # (rows, tokens)
            share = (mass * inside[e]).sum() / mass.sum().clamp_min(1e-12)
            energy = energy + (1 - share) ** 2
        self.energy = energy if self.energy is None else self.energy + energy

    def guide(self, unet, model_input: torch.Tensor, t, embeddings: torch.Tensor, unet_kwargs=None) -> torch.Tensor:
        """model_input moved `guidance` down the gradient of the box energy (computed on the conditional
        half; both CFG halves move by it)."""
        half = model_input.shape[0] // 2 if self.cfg else 0
        rows = embeddings.shape[0] // 2 if self.cfg else 0
        with torch.enable_grad():
            x = model_input[half:].detach().clone().requires_grad_(True)
            self.cond_only, self.energy = True, None
            try:
                unet(x, t, encoder_hidden_states=embeddings[rows:], **(unet_kwargs or {}))
                energy = self.energy
            finally:
                self.cond_only, self.energy = False, None
            if energy is None or not energy.requires_grad:
                return model_input
            (gradient,) = torch.autograd.grad(energy, x)
        step = (self.layout.guidance * gradient).to(model_input.dtype)
        return model_input - (torch.cat([step] * 2) if self.cfg else step)


class LayoutAttnProcessor:
    """Wraps one attention processor (`inner`) of a UNet: passes through outside controlled steps,
    masks per its `kind` ("cross", "spatial", "temporal") inside them (module docstring)."""

    def __init__(self, control: LayoutControl, inner, kind: str):
        self.control, self.inner, self.kind = control, inner, kind

    def wrap(self, inner) -> LayoutAttnProcessor:
        """The same layout processor around another inner one (how cross-frame attention goes inside)."""
        return LayoutAttnProcessor(self.control, inner, self.kind)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        control = self.control
        if not control.active or hidden_states.ndim != 3:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        rows, tokens = hidden_states.shape[:2]
        if self.kind == "cross" and encoder_hidden_states is not None:
            if control.cond_only:
                return self._recorded_cross(attn, hidden_states, encoder_hidden_states)
            mask = control.cross_mask(rows, tokens, encoder_hidden_states.shape[1], hidden_states.dtype,
                                      hidden_states.device)
            if mask is None or attention_mask is not None:  # a caller's own mask: leave the layer alone
                return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
            return _masked_attention(attn, hidden_states, mask, context=encoder_hidden_states)
        if self.kind == "spatial" and encoder_hidden_states is None:
            first_frame = getattr(self.inner, "first_frame", None)  # Text2Video-Zero's cross-frame attention
            mask = control.spatial_mask(rows, tokens, first_frame is not None, hidden_states.dtype,
                                        hidden_states.device)
            return _masked_attention(attn, hidden_states, mask, first_frame=first_frame)
        if self.kind == "temporal" and encoder_hidden_states is None:
            mask = control.temporal_mask(rows, tokens, hidden_states.dtype, hidden_states.device)
            if mask is None:
                return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
            return _masked_attention(attn, hidden_states, mask)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)

    def _recorded_cross(self, attn, hidden_states, context):
        """Cross-attention written out (probabilities kept for the energy), with gradients."""
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (x.view(x.shape[0], -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
        probabilities = (query @ key.transpose(-1, -2) * attn.scale).softmax(-1)
        self.control.record(probabilities.float(), hidden_states.shape[1])
        out = (probabilities @ value).transpose(1, 2).flatten(2).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def _additive(allowed: torch.Tensor, dtype, device) -> torch.Tensor:
    """A boolean mask as the additive one attention kernels take directly (0 allowed, dtype's min not)."""
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask[~allowed] = torch.finfo(dtype).min
    return mask.to(device)


def _masked_attention(attn, hidden_states, mask, context=None, first_frame=None):
    """Attention with an additive `mask` (rows, 1, queries, keys), broadcast over the heads: to `context`
    (cross-attention) when given, else self-attention, with keys and values from frame 1 when
    `first_frame` (CrossFrameAttnProcessor.first_frame) is given."""
    out = attention_core(attn, hidden_states, context, mask, first_frame)
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


def attention_core(attn, hidden_states, context=None, mask=None, first_frame=None):
    """diffusers' AttnProcessor2_0 on 3-D hidden states, between its input reshaping and its residual:
    group norm, projections, keys and values from frame 1 when `first_frame` is given, per-head
    scaled-dot-product attention with `mask`, output projection (Text2Video-Zero's cross-frame processor,
    generation/zero.py, shares it)."""
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if context is None:
        context = hidden_states
    elif attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    key, value = attn.to_k(context), attn.to_v(context)
    if first_frame is not None:
        key, value = first_frame(key), first_frame(value)
    head_dim = key.shape[-1] // attn.heads
    query, key, value = (x.view(x.shape[0], -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    out = functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).flatten(2).to(query.dtype)
    return attn.to_out[1](attn.to_out[0](out))


def processor_kind(name: str) -> str:
    """"temporal" (motion modules), "cross" (attn2) or "spatial" (attn1) for an attn_processors name."""
    if ".motion_modules." in f".{name}":
        return "temporal"
    return "cross" if name.endswith("attn2.processor") else "spatial"


def layout_attention(unet, control: LayoutControl):
    """Context: every attention processor of `unet` wrapped in a LayoutAttnProcessor; the previous ones
    come back after it."""
    return installed_processors([unet], lambda name, current: LayoutAttnProcessor(control, current,
                                                                                  processor_kind(name)))
