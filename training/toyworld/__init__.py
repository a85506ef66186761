"""Small real models trained on the toy world (storyreel.toyworld), in the on-disk formats the `default`
preset loads, so the `toy` preset goes through the same loaders as pretrained weights.

One module a stage, each with the same two calls:

    summary = train(world_dir, out_dir, seed=0, progress=None)   # writes out_dir/<stage>/, returns a dict
    rows = measure(out_dir, world_dir)                           # the stage's effects on held-out clips

Each method's effect against its ablation on the trained weights is one more module with `measure`
(EFFECTS). `scripts/train_toyworld.py` writes the world and runs every stage from nothing;
`scripts/bench_toyworld.py` prints every stage's and effect's rows. The weights live in core/presets/toy/.
"""

import importlib

# stage -> module, in training order (a later stage may read an earlier one's weights).
STAGES = {
    "clip": "storyreel.training.toyworld.clip",
    "depth": "storyreel.training.toyworld.depth",
    "generator": "storyreel.training.toyworld.generator",
    "motion": "storyreel.training.toyworld.motion",  # over the generator's image model
    "characters": "storyreel.training.toyworld.characters",  # packs on the generator beside them
}

# effect -> module whose measure(weights_dir, world_dir) compares one method with its ablation, sampling
# the trained generator (the folders it reads: the module's FOLDERS).
EFFECTS = {
    "layouts": "storyreel.training.toyworld.layouts",  # entity boxes: none, masked attention, + energy guidance
    "long_clips": "storyreel.training.toyworld.long_clips",  # overlap, vidrd, freenoise on 48 frames
    "zero": "storyreel.training.toyworld.zero",  # Text2Video-Zero: motion shift and frame consistency
    "characters": "storyreel.training.toyworld.characters",  # TimeInv + LoRA against TI, LoRA, no pack
    "tau": "storyreel.training.toyworld.tau",  # structure against a character's identity per τ
    "chain": "storyreel.training.toyworld.chain",  # text only against retrieval + depth (Fréchet distance)
}


def stage(name: str):
    """The module of one stage (its `train` and `measure`) or effect (its `measure`)."""
    return importlib.import_module(STAGES.get(name) or EFFECTS[name])
