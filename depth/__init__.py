"""MiDaS-compatible depth for images and clips, stable across frames, as generator conditioning.

Front door (`from storyreel import depth`):
    model = depth.create_depth_model("dpt_hybrid_384", weights=None)   # registry: depth/registry.py
    raw = model.predict(frames)             # uint8 (F, H, W, 3) -> float32 inverse depth (F, H, W)
    depth01 = depth.stabilize(raw)          # one scale/shift per frame, one range per clip -> [0, 1]
    cond, info = depth.conditioning_for_source(source, model=model, size=(256, 256), num_frames=16,
                                               index_dir=INDEX_DIR)
Stages: registry -> dpt (network) -> checkpoint (official MiDaS .pt) -> model (transforms, batches)
-> temporal (stabilize, flicker) -> conditioning (resampling, cache); media (decode/encode); cli.

Names are imported on first use, so `import storyreel.cli.depth` (every `storyreel` start) does not load torch.
"""

import importlib

_EXPORTS = {
    "MODELS": "storyreel.depth.registry", "model_for_preset": "storyreel.depth.registry",
    "DepthModel": "storyreel.depth.model", "create_depth_model": "storyreel.depth.model",
    "network_size": "storyreel.depth.model",
    "flicker": "storyreel.depth.temporal", "stabilize": "storyreel.depth.temporal",
    "conditioning_for_source": "storyreel.depth.conditioning", "to_conditioning": "storyreel.depth.conditioning",
    "sample_frame_indices": "storyreel.depth.conditioning", "source_window": "storyreel.depth.conditioning",
    "Playback": "storyreel.depth.conditioning",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'depth' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
