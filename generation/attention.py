"""Attention processors installed for one call and put back after it: the one way layout control
(generation/layout_attention.py) and Text2Video-Zero's cross-frame attention (generation/zero.py)
change a model's attention, so a pipeline's models can be shared between calls and backends.

    with installed_processors([pipe.unet], lambda name, current: MyProcessor(current)):
        pipe.unet(...)  # every attention layer runs MyProcessor
    # the previous processors are back

Character LoRA layers (generation/characters/lora.py) live on the attention projections
(`to_q/to_k/to_v/to_out`), not in the processors, so they stay in effect under any processor.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable


@contextlib.contextmanager
def installed_processors(models: Iterable, processor_for: Callable):
    """Inside the block every attention processor of `models` is `processor_for(name, current)` (name as
    in `model.attn_processors`); afterwards the previous ones are back. Models that are None or have no
    attention processors are skipped. Nested blocks stack: the later one sees the earlier's processors."""
    saved = []
    try:
        for model in models:
            if model is None or not hasattr(model, "attn_processors"):
                continue
            previous = model.attn_processors
            saved.append((model, previous))
            model.set_attn_processor({name: processor_for(name, current) for name, current in previous.items()})
        yield
    finally:
        for model, previous in reversed(saved):
            model.set_attn_processor(dict(previous))  # set_attn_processor consumes the dict it is given
