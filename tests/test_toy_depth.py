"""The toy depth model (training/toyworld/depth.py, weights in core/presets/toy/depth/): on clips it never
saw it beats the same network at random init, and it runs through the project's loaders, named by a
preset file or by `--depth-model FOLDER`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from storyreel.core.models import with_overrides
from storyreel.core.preset_files import find_preset
from storyreel.toyworld import write_world
from storyreel.training.toyworld import depth as toy_depth

TOY = Path(toy_depth.__file__).resolve().parents[2] / "core" / "presets" / "toy"
# The weights were trained on a world of seed 0; this seed's clips are drawn from other seeds, so every
# clip here is new to the model.
UNSEEN_SEED = 101


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy-depth-world")
    write_world(folder, clips=6, seed=UNSEEN_SEED, held_out=0.5)
    return folder


def test_trained_depth_beats_random_init_on_unseen_clips(world):
    rows = {row["row"]: row for row in toy_depth.measure(TOY, world)}
    trained, random_init, truth = rows["trained"], rows["random init"], rows["truth"]
    assert trained["frames"] == 48 and trained["object_pairs"] >= 20
    assert truth["spearman"] == pytest.approx(1.0) and truth["object_nearer"] == 1.0
    assert trained["spearman"] >= random_init["spearman"] + 0.25
    assert trained["delta1"] >= random_init["delta1"] + 0.5
    assert trained["abs_rel"] <= random_init["abs_rel"] - 0.3
    assert trained["object_nearer"] >= random_init["object_nearer"] + 0.3
    # more than "lower in the frame is nearer": metric agreement the row prior cannot reach
    assert trained["delta1"] >= rows["prior: lower is nearer"]["delta1"] + 0.3


def test_a_preset_file_names_the_toy_depth_folder_and_the_cli_runs_it(world, tmp_path, run_cli):
    preset = tmp_path / "toy-depth.json"  # `depth` is relative to the preset file
    preset.write_text(json.dumps({"extends": "tiny", "depth": os.path.relpath(TOY / "depth", tmp_path)}))
    assert find_preset(str(preset)).depth == str((TOY / "depth").resolve())
    out = tmp_path / "depth.mp4"
    proc = run_cli("depth", world / "clip_0000.mp4", "--out", out, "--models", preset, "--json", check=True)
    report = json.loads(proc.stdout)
    assert report["model"] == str((TOY / "depth").resolve()) and report["frames"] == 16
    assert report["size"] == [64, 64] and out.is_file()
    assert with_overrides(find_preset("tiny"), depth=str(TOY / "depth")).depth == report["model"]  # --depth-model
