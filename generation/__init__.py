"""Structure-guided video generation with personalized characters, and the story application on top.

Front door:
    pipe = StructureGuidedPipeline.from_components(create_components("tiny"))   # a diffusers pipeline
    out = pipe("a bear walks", depth, GenerationSettings(frames=16, tau=0.5, seed=0))
    clip = ClipGenerator("tiny").generate("a bear walks", "walk.mp4", "clip.mp4")  # depth + pipeline + writer
    manifest = render_story("story.yaml", "my_index", "out", preset="tiny")
Layers: model code (settings, components, pipeline, characters/), training/, then the story
application (story/: story files, planner, render, demo); evaluate scores clips; cli registers commands.

Names are imported on first use, so `import storyreel.cli.generate` (every `storyreel` start) does
not load torch or diffusers.
"""

import importlib

_EXPORTS = {
    "GenerationSettings": "storyreel.generation.settings",
    "StructureGuidedPipeline": "storyreel.generation.pipeline",
    "StructureGuidedPipelineOutput": "storyreel.generation.pipeline",
    "StructureGuidedZeroPipeline": "storyreel.generation.zero",
    "Components": "storyreel.generation.components", "create_components": "storyreel.generation.components",
    "load_components": "storyreel.generation.components",
    "ClipGenerator": "storyreel.generation.generate", "generate_clip": "storyreel.generation.generate",
    "load_characters": "storyreel.generation.characters", "train_character": "storyreel.training",
    "load_story": "storyreel.story", "render_story": "storyreel.story",
    "plan_rule_based": "storyreel.story", "score_clip": "storyreel.generation.evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'storyreel.generation' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
