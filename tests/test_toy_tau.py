"""τ on the trained toy generator (Animate-A-Story's clamp, core/presets/toy): the longer the depth branch
guides the schedule, the more the toy depth model finds the source's object standing out nearer than its
surroundings in the generated frames.
The full measurement (12 clips, every τ, identity beside it) is scripts/bench_toyworld.py's `tau` rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import storyreel.core
from storyreel.toyworld import held_out_clips, write_world
from storyreel.training.toyworld.generator import SAMPLE_FRAMES, load_pipeline, sample, toy_preset
from storyreel.training.toyworld.generator_data import read_world

TOY = Path(storyreel.core.__file__).parent / "presets" / "toy"
CLIPS = 4


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """The first CLIPS clips that scripts/train_toyworld.py's world (600 clips, seed 0) held out of training."""
    folder = tmp_path_factory.mktemp("world")
    write_world(folder, clips=22, seed=0)  # clip i is drawn from [seed, i] whatever the world's size
    manifest = json.loads((folder / "world.json").read_text())
    manifest["heldout"] = [f"clip_{i:04d}.mp4" for i in sorted(held_out_clips(600, 0, 0.2)) if i < 22][:CLIPS]
    (folder / "world.json").write_text(json.dumps(manifest))
    return read_world(folder, "heldout")


def test_structure_follows_the_source_more_at_tau_1_than_at_tau_0(held_out):
    from storyreel import depth
    from storyreel.training.toyworld.tau import structure_scores

    pipe = load_pipeline(TOY)
    model = depth.create_depth_model(depth.model_for_preset(toy_preset(TOY)), device="cpu")
    others = held_out[1:] + held_out[:1]

    def scores(tau):  # measured on these clips: object nearer 0.25 at τ 0, 0.69 at τ 1, 0.28 on other clips' hints
        frames = [sample(pipe, c.caption, c.hint[:SAMPLE_FRAMES], tau, seed=k) for k, c in enumerate(held_out)]
        return structure_scores(model, frames, held_out, others)

    at_0, at_1 = scores(0.0), scores(1.0)
    assert at_1["object_nearer"] > at_0["object_nearer"] + 0.2, (at_0, at_1)
    assert at_1["object_nearer"] > at_1["object_nearer_other_hint"] + 0.2, at_1
    assert at_1["spearman"] > at_0["spearman"], (at_0, at_1)
