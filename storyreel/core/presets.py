"""Preset names shared by every package.

A preset is a name (`tiny`, `default`) that each package maps to its own components in its own
registry (CLIP in `index.embed`, depth in `depth`, diffusion in `generation`). This module only
decides *which* preset a command uses.
"""

from __future__ import annotations

import os

from storyreel.core.errors import UserError

PRESETS = ("tiny", "default")
ENV_VAR = "STORYREEL_MODELS"


def resolve_preset(name: str | None = None) -> str:
    """`--models` value, else $STORYREEL_MODELS, else "default" (the pretrained preset)."""
    preset = name or os.environ.get(ENV_VAR) or "default"
    if preset not in PRESETS:
        raise UserError(f"unknown model preset {preset!r} (--models / ${ENV_VAR}); choose one of {', '.join(PRESETS)}")
    return preset
