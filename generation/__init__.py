"""Structure-guided video generation with personalized characters: the model library.

Front door:
    pipe = StructureGuidedPipeline.from_components(create_components("tiny"))   # a diffusers pipeline
    out = pipe("a bear walks", depth, GenerationSettings(frames=16, tau=0.5, seed=0))
    clip = ClipGenerator("tiny").generate(ClipRequest("a bear walks", "walk.mp4"), "clip.mp4")  # depth + writer
Modules: settings (the one settings object), components (loading a preset's models), pipeline and zero
(the two backends), long_clips, attention and layout_attention, characters/ (packs at inference),
generate (depth + pipeline + writer), evaluate (CLIP-T, CLIP-I, consistency), distribution_metrics
(the papers' FVD/KVD/IS formulas on features). Training sits above in
storyreel.training, whole stories in storyreel.story.

Names are imported on first use, so `storyreel --help` does not load torch or diffusers.
"""

import importlib

_EXPORTS = {
    "GenerationSettings": "storyreel.generation.settings",
    "StructureGuidedPipeline": "storyreel.generation.pipeline",
    "StructureGuidedPipelineOutput": "storyreel.generation.pipeline",
    "StructureGuidedZeroPipeline": "storyreel.generation.zero",
    "Components": "storyreel.generation.components", "create_components": "storyreel.generation.components",
    "load_components": "storyreel.generation.components",
    "ClipGenerator": "storyreel.generation.generate", "ClipRequest": "storyreel.generation.generate",
    "generate_clip": "storyreel.generation.generate", "Steering": "storyreel.generation.pipeline",
    "load_characters": "storyreel.generation.characters", "score_clip": "storyreel.generation.evaluate",
    "frechet_distance": "storyreel.generation.distribution_metrics",
    "kernel_distance": "storyreel.generation.distribution_metrics",
    "inception_score": "storyreel.generation.distribution_metrics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'storyreel.generation' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
