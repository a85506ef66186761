"""The toy world's CLIP (training/toyworld/clip.py): the committed folder finds held-out clips by their
captions far above chance and far above the same architecture at random init, and it loads wherever
storyreel takes a CLIP (ClipSpec, --clip PATH, a preset file's clip path, an index's recorded id)."""

import json
import os
import shutil

import numpy as np
import pytest

from storyreel.core.errors import UserError
from storyreel.core.models import ClipSpec, clip_for_model_id, parse_clip, with_overrides
from storyreel.core.preset_files import BUILT_IN_DIR, read_preset
from storyreel.index.embed import clip_embedder
from storyreel.toyworld import CAMERA_MOTIONS, caption, draw_clip, render_clip
from storyreel.training.toyworld.clip import CONFIG, query_captions, recall_chance

FOLDER = BUILT_IN_DIR / "toy" / "clip"
UNSEEN_WORLD_SEED = 99  # training draws its clips from world seed 0: these clips were never seen


@pytest.fixture(scope="module")
def unseen_clips():
    """One middle frame and the caption-without-camera-move of 60 clips no model was trained on."""
    frames, queries, keys = [], [], []
    for i in range(60):
        spec = draw_clip([UNSEEN_WORLD_SEED, i], motion=CAMERA_MOTIONS[i % len(CAMERA_MOTIONS)], frames=3)
        named = spec.objects[0]
        frames.append(render_clip(spec).frames[1])
        queries.append(query_captions({"caption": caption(spec)})["no_motion"])
        keys.append((named.shape, named.colour, spec.scene))
    return np.stack(frames), queries, keys


def recall_at_5(spec: ClipSpec, unseen_clips) -> float:
    frames, queries, keys = unseen_clips
    embedder = clip_embedder(spec, device="cpu")
    scores = embedder.embed_text(queries) @ embedder.embed_images(frames).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return float(np.mean([any(keys[j] == keys[q] for j in row) for q, row in enumerate(top)]))


def test_trained_clip_finds_unseen_clips_far_above_chance_and_random_init(unseen_clips):
    _, _, keys = unseen_clips
    relevant = np.array([keys.count(k) for k in keys])
    chance = recall_chance(relevant, len(keys), 5)
    trained = recall_at_5(parse_clip(str(FOLDER)), unseen_clips)
    random_init = recall_at_5(ClipSpec("toy-clip-random-init", config=CONFIG), unseen_clips)
    assert trained >= 3 * chance, (trained, chance)
    assert trained >= random_init + 0.3, (trained, random_init)


def test_the_folder_loads_as_clip_spec_flag_and_preset_file_path(tmp_path, monkeypatch):
    spec = parse_clip(str(FOLDER))
    assert spec == ClipSpec(f"local-dir:{FOLDER.resolve()}") and spec.local_folder == FOLDER.resolve()
    monkeypatch.chdir(FOLDER.parent)
    assert parse_clip("./clip").model_id == parse_clip(f"local-dir:{FOLDER}").model_id == spec.model_id
    assert spec.model_id.startswith(f"open_clip:local-dir:{FOLDER.resolve()}@")
    assert with_overrides("tiny", clip=str(FOLDER)).clip == spec
    preset_file = tmp_path / "mine.json"
    preset_file.write_text(json.dumps({"extends": "tiny", "clip": os.path.relpath(FOLDER, tmp_path)}))
    assert read_preset(preset_file).clip == spec
    embedder = clip_embedder(spec, device="cpu")
    assert embedder.model_id == spec.model_id and embedder.dim == CONFIG["embed_dim"]
    assert embedder.image_size == (64, 64) and embedder.tokenizer.context_length == CONFIG["text_cfg"]["context_length"]

    with pytest.raises(UserError, match="--clip .*: not an open_clip folder"):
        parse_clip(str(tmp_path))
    preset_file.write_text(json.dumps({"extends": "tiny", "clip": "no/such/folder"}))
    with pytest.raises(UserError, match='mine.json: clip: expected an object or the path of an open_clip folder, '
                                        'got "no/such/folder"'):
        read_preset(preset_file)


def test_an_index_id_reloads_the_same_folder_and_notices_other_weights(tmp_path):
    copy = tmp_path / "clip"
    shutil.copytree(FOLDER, copy)
    spec = parse_clip(str(copy))
    recorded = spec.model_id  # what an index built with it holds
    assert clip_for_model_id(recorded) == spec
    weights = copy / "open_clip_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one weight's bits change
    weights.write_bytes(bytes(data))
    assert spec.model_id != recorded
    with pytest.raises(UserError, match="holds other weights than when the index was built"):
        clip_for_model_id(recorded)
    shutil.rmtree(copy)
    with pytest.raises(UserError, match="the index's CLIP folder .* is gone; pass --clip FOLDER"):
        clip_for_model_id(recorded)


def test_search_on_an_index_built_with_the_folder_reloads_it(tmp_path):
    from storyreel import index
    from storyreel.retrieval import search
    from storyreel.toyworld import write_world

    truths = write_world(tmp_path / "world", clips=2, seed=3, frames=8, held_out=0)
    settings = index.BuildSettings(preset=with_overrides("tiny", clip=str(FOLDER)), device="cpu")
    index.build(tmp_path / "world", tmp_path / "index", settings)
    hits = search(tmp_path / "index", truths[0]["caption"], k=2)  # no embedder: the index's recorded CLIP
    assert len(hits) == 2
    with index.open_index(tmp_path / "index") as idx:
        assert idx.model_id == parse_clip(str(FOLDER)).model_id
