"""Official MiDaS checkpoints (`.pt` state dicts) on the installed timm: key remap + strict load.

The official files were saved from MiDaS's `DPTDepthModel` on timm 0.6.12. Their key layout:

    pretrained.model.*                      the timm backbone (incl. its unused classifier `head.*`)
    pretrained.act_postprocess{1-4}.0.project.0.*   readout projection (Linear 2C->C)
    pretrained.act_postprocess{1-4}.3.*     1x1 conv;   .4.* resample conv (levels 1, 2, 4)
                                            (hybrid: levels 1-2 are ResNet stages, no keys)
    scratch.layer{1-4}_rn.weight            3x3 convs to the decoder width (no bias)
    scratch.refinenet{1-4}.resConfUnit{1,2}.conv{1,2}.*, .out_conv.*   fusion blocks
    scratch.output_conv.{0,2,4}.*           head convs

The remap is explicit and two-way (`OFFICIAL_TO_OURS`): prefixes are renamed to this package's
module names (depth/dpt.py). What newer timm changed:
  * timm >= 0.9 made BEiT's `attn.relative_position_index` a non-persistent buffer (recomputed from
    the window size), so the files carry keys the model no longer saves (MiDaS issues #245, #275).
    Such keys are checked for shape and then dropped: `_drop_non_persistent`.
  * timm >= 0.9 moved Swin `downsample` and renamed `head` -> `head.fc`; Swin models are not in the
    registry, so no rule is needed for them.
Everything else must match exactly (strict): a missing, unexpected or mis-shaped key is a
one-line UserError naming the first offenders in the official spelling.
"""

from __future__ import annotations

from pathlib import Path

import torch

from storyreel.core.errors import UserError


def _prefix_pairs() -> list[tuple[str, str]]:
    pairs = [("pretrained.model.", "backbone."), ("scratch.output_conv.", "head.")]
    for level in range(1, 5):
        i = level - 1
        pairs += [
            (f"pretrained.act_postprocess{level}.0.project.0.", f"reassemble.{i}.readout.0."),
            (f"pretrained.act_postprocess{level}.3.", f"reassemble.{i}.project."),
            (f"pretrained.act_postprocess{level}.4.", f"reassemble.{i}.resample."),
            (f"scratch.layer{level}_rn.", f"layer_rn.{i}."),
            (f"scratch.refinenet{level}.resConfUnit1.", f"fusion.{i}.skip_unit."),
            (f"scratch.refinenet{level}.resConfUnit2.", f"fusion.{i}.unit."),
            (f"scratch.refinenet{level}.out_conv.", f"fusion.{i}.out_conv."),
        ]
    return pairs


OFFICIAL_TO_OURS: list[tuple[str, str]] = _prefix_pairs()


def _rename(key: str, pairs: list[tuple[str, str]]) -> str | None:
    for old, new in pairs:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def to_ours(official_key: str) -> str | None:
    """Our parameter name for an official checkpoint key (None if no rule covers it)."""
    return _rename(official_key, OFFICIAL_TO_OURS)


def to_official(our_key: str) -> str:
    """The official checkpoint key for one of our parameter names."""
    return _rename(our_key, [(new, old) for old, new in OFFICIAL_TO_OURS]) or our_key


def official_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s weights under official MiDaS key names (what a MiDaS `.pt` holds, minus the keys
    only timm 0.6 saved): used to export our models, e.g. `tiny`, in the real on-disk format."""
    return {to_official(k): v for k, v in model.state_dict().items()}


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a MiDaS `.pt` file, loaded with `weights_only=True` (never arbitrary pickles)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"depth checkpoint {path} does not exist (--weights)")
    try:
        try:  # memory-mapped: tensors are read when assigned, no second copy of a 1.4 GB file
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (pre-zip) serialization cannot be mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt zip, truncated file, pickle with code in it, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read depth checkpoint {path}: {reason[:200]}") from None
    if isinstance(state, dict) and "model" in state and "optimizer" in state:  # training snapshot
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"depth checkpoint {path} is not a MiDaS state dict (expected a dict of tensors)")
    return state


def _drop_non_persistent(official: dict, model: torch.nn.Module, path: Path) -> dict:
    """Drop keys that current timm keeps as non-persistent buffers, after checking their shapes."""
    buffers = dict(model.named_buffers())
    persistent = set(model.state_dict())
    kept = {}
    for key, value in official.items():
        ours = to_ours(key)
        if ours in buffers and ours not in persistent:
            if tuple(value.shape) != tuple(buffers[ours].shape):
                raise UserError(
                    f"depth checkpoint {path} does not fit {model.config.name}: {key} has shape "
                    f"{tuple(value.shape)}, the model needs {tuple(buffers[ours].shape)}"
                )
            continue
        kept[key] = value
    return kept


def _first(keys, n: int = 3) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_official_weights(model: torch.nn.Module, path: Path) -> None:
    """Strictly load a MiDaS checkpoint into `model` (a depth.dpt.DPT, possibly on the meta device).

    Tensors are assigned, not copied, so a model built on the meta device costs no extra memory.
    """
    official = _drop_non_persistent(read_checkpoint(path), model, Path(path))
    expected = {to_official(k): v for k, v in model.state_dict().items()}
    missing, unexpected = set(expected) - set(official), set(official) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_first(unexpected)}")
        raise UserError(
            f"depth checkpoint {path} does not match {model.config.name}: {'; '.join(parts)} "
            f"(is it the official MiDaS file for this model? pick the model with --model)"
        )
    for key, value in official.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise UserError(
                f"depth checkpoint {path} does not match {model.config.name}: {key} has shape "
                f"{tuple(value.shape)}, the model needs {tuple(expected[key].shape)}"
            )
    model.load_state_dict({to_ours(k): v for k, v in official.items()}, strict=True, assign=True)
    _materialize_buffers(model)


def _materialize_buffers(model: torch.nn.Module) -> None:
    """Non-persistent buffers of a meta-built model are not in any file: allocate and recompute them."""
    for module in model.modules():
        meta = [name for name, buf in module._buffers.items() if buf is not None and buf.is_meta]
        for name in meta:
            module._buffers[name] = torch.empty_like(module._buffers[name], device="cpu")
        if meta:
            if not hasattr(module, "init_non_persistent_buffers"):
                raise RuntimeError(f"cannot rebuild buffers {meta} of {type(module).__name__}")
            module.init_non_persistent_buffers()
