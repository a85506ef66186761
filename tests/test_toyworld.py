"""The toy world: deterministic, and its ground truth (boxes, depth, camera motion, captions) agrees
with its pixels, with the project's motion estimator and with the indexer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storyreel.core.errors import UserError
from storyreel.toyworld import (
    CAMERA_MOTIONS,
    CHARACTERS,
    COLOURS,
    ClipSpec,
    WorldObject,
    caption,
    character_images,
    draw_clip,
    held_out_clips,
    render_clip,
    shade,
    write_character_photos,
    write_world,
)
from storyreel.toyworld.characters import character_pixels
from storyreel.toyworld.sprites import Placement, layer, object_pixels, visible_box

WORLD_SEED = 5  # its 3 clips film zoom-in, zoom-out and static (camera moves take turns from the seed)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    return folder, write_world(folder, clips=3, seed=WORLD_SEED)


def box_iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_the_same_seed_draws_the_same_pixels_and_another_seed_does_not(tmp_path):
    first, again, other = (render_clip(draw_clip(seed)) for seed in ([3, 1], [3, 1], [3, 2]))
    assert np.array_equal(first.frames, again.frames) and np.array_equal(first.depth, again.depth)
    assert first.boxes == again.boxes
    assert not np.array_equal(first.frames, other.frames)
    assert np.array_equal(character_images("pip", 2, seed=4), character_images("pip", 2, seed=4))
    write_world(tmp_path / "a", clips=2, seed=9, frames=4)
    write_world(tmp_path / "b", clips=2, seed=9, frames=4)
    for name in ("clip_0000.mp4.json", "clip_0001.mp4.json", "world.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    truth = json.loads((tmp_path / "a" / "clip_0001.mp4.json").read_text())
    redrawn = draw_clip(truth["seed"], truth["camera_motion"], truth["size"], truth["frames"])
    assert caption(redrawn) == truth["caption"]
    assert render_clip(redrawn).boxes == [obj["boxes"] for obj in truth["objects"]]
    with np.load(tmp_path / "a" / "clip_0001.depth.npz") as a, np.load(tmp_path / "b" / "clip_0001.depth.npz") as b:
        assert np.array_equal(a["depth"], b["depth"]) and np.array_equal(a["ids"], b["ids"])


def test_each_box_is_where_its_objects_colour_is_on_clean_frames():
    checked = 0
    for i, motion in enumerate(CAMERA_MOTIONS):
        spec = draw_clip([11, i], motion=motion, frames=8)
        clip = render_clip(spec)
        for obj, boxes in zip(spec.objects, clip.boxes):
            colours = np.float32([COLOURS[obj.colour], shade(obj.colour)])
            for frame, box in zip(clip.frames, boxes):
                mask = (frame[:, :, None, :] == colours).all(-1).any(-1)
                assert (box is None) == (not mask.any())
                if box is not None:
                    assert box_iou(box, visible_box(mask.astype(np.uint8), 1)) >= 0.9, (spec, box)
                    checked += 1
    assert checked >= len(CAMERA_MOTIONS) * 8


def test_objects_are_nearer_than_the_background_behind_them_and_nearer_sprites_occlude(world):
    folder, truths = world
    for i, truth in enumerate(truths):
        with np.load(folder / f"clip_{i:04d}.depth.npz") as saved:
            depth, ids = saved["depth"].astype(np.float32), saved["ids"]
        assert depth.shape == ids.shape == (truth["frames"], truth["size"], truth["size"])
        for obj in truth["objects"]:
            for t, box in enumerate(obj["boxes"]):
                if box is None:
                    continue
                x0, y0, x1, y1 = box
                for row in range(y0, y1):  # the depth ramp is vertical: the background of a row is one depth
                    inside, behind = depth[t, row][ids[t, row] == obj["id"]], depth[t, row][ids[t, row] == 0]
                    if inside.size and behind.size:
                        assert inside.max() < behind.min()
    # Two overlapping sprites: the nearer one shows, whichever is drawn first.
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32) + 0.5
    near = object_pixels("square", "red", "solid", *Placement(14, 16, 8).local(xs, ys))
    far = object_pixels("circle", "blue", "solid", *Placement(20, 16, 8).local(xs, ys))
    for order in ([(near, 2.0, 1), (far, 3.0, 2)], [(far, 3.0, 2), (near, 2.0, 1)]):
        rgb, depth, ids = np.zeros((32, 32, 3), np.float32), np.full((32, 32), 9.0, np.float32), np.zeros((32, 32))
        for sprite, sprite_depth, sprite_id in order:
            layer(rgb, depth, ids, sprite, sprite_depth, sprite_id)
        assert ids[16, 16] == 1 and depth[16, 16] == 2.0 and ids[16, 26] == 2 and ids[16, 2] == 0


def test_camera_motion_labels_agree_with_the_motion_estimator_on_written_clips(world):
    from storyreel.core.video import read_video
    from storyreel.index.motion import MOTION_LABELS, camera_motion
    from storyreel.synthetic import SHOT_KINDS

    assert CAMERA_MOTIONS == SHOT_KINDS and set(CAMERA_MOTIONS) <= set(MOTION_LABELS)
    folder, truths = world
    assert [t["camera_motion"] for t in truths] == ["zoom-in", "zoom-out", "static"]
    for i, truth in enumerate(truths):
        frames = read_video(folder / f"clip_{i:04d}.mp4")
        assert frames.shape == (16, 64, 64, 3)
        assert camera_motion(frames).label == truth["camera_motion"], truth["caption"]
    for motion in ("pan-right", "tilt-up"):  # a slide each way, on frames straight from the renderer
        assert camera_motion(render_clip(draw_clip([12], motion=motion)).frames).label == motion


def test_captions_name_the_object_scene_and_camera_move(world):
    obj = WorldObject("circle", "red", "striped", 32, 40, 0, 0, 8, 1.0)
    assert caption(ClipSpec("beach", 0, "pan-left", (obj,))) == "a red striped circle on a beach, the camera pans left"
    solid = WorldObject("triangle", "yellow", "solid", 32, 40, 0, 0, 8, 1.0)
    assert caption(ClipSpec("room", 0, "zoom-in", (solid,))) == "a yellow triangle in a room, the camera zooms in"
    _, truths = world
    for truth in truths:
        words = truth["caption"].replace(",", "").split()
        named = truth["objects"][0]
        assert [truth[k] for k in ("shape", "colour", "texture")] == [named[k] for k in ("shape", "colour", "texture")]
        assert truth["colour"] in words and truth["shape"] in words
        assert ("striped" in words) == (truth["texture"] == "striped")
        assert ("dotted" in words) == (truth["texture"] == "dotted")
        assert truth["scene"] in truth["caption"]
        assert truth["camera_motion"].split("-")[-1] in words or truth["camera_motion"] == "static"


def test_the_indexer_reads_the_written_world(world):
    from storyreel import index

    folder, truths = world
    report = index.build(folder, folder.parent / f"{folder.name}-index", index.BuildSettings(preset="tiny"))
    assert report.videos == 3 and report.errors == 0
    with index.open_index(folder.parent / f"{folder.name}-index") as idx:
        rows = idx.clips()
    # One clip per video (no cuts), and the index's own motion label is the truth's.
    assert sorted((row.video.rsplit("/", 1)[-1], row.motion) for row in rows) == [
        (f"clip_{i:04d}.mp4", truth["camera_motion"]) for i, truth in enumerate(truths)]


def test_the_split_is_drawn_from_the_seed_and_written_down(tmp_path):
    assert held_out_clips(10, seed=0) == held_out_clips(10, seed=0) and len(held_out_clips(10, seed=0)) == 2
    assert held_out_clips(50, seed=0) != held_out_clips(50, seed=1)
    truths = write_world(tmp_path, clips=5, seed=2, frames=2, held_out=0.4)
    manifest = json.loads((tmp_path / "world.json").read_text())
    assert len(manifest["heldout"]) == 2 and len(manifest["train"]) == 3
    assert not set(manifest["heldout"]) & set(manifest["train"])
    assert [t["split"] == "heldout" for t in truths] == [f"clip_{i:04d}.mp4" in manifest["heldout"] for i in range(5)]
    with pytest.raises(UserError, match="write_world: need clips >= 1"):
        write_world(tmp_path, clips=0)


def test_characters_look_different_from_each_other_and_vary_between_photos(tmp_path):
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32) + 0.5
    looks = {name: character_pixels(name, *Placement(32, 32, 28).local(xs, ys)) for name in CHARACTERS}
    assert 2 <= len(looks) <= 3
    names = list(looks)
    for a in names:
        for b in names[names.index(a) + 1:]:
            both = looks[a][0] & looks[b][0]
            assert np.abs(looks[a][1][both] - looks[b][1][both]).mean() > 40, (a, b)
    photos = character_images("bo", 4, seed=0)
    assert photos.shape == (4, 64, 64, 3) and photos.dtype == np.uint8
    assert all(not np.array_equal(photos[0], p) for p in photos[1:])
    assert not np.array_equal(photos, character_images("zuzu", 4, seed=0))
    paths = write_character_photos(tmp_path / "pip", "pip", 3)
    assert [p.name for p in paths] == ["pip_000.png", "pip_001.png", "pip_002.png"]
    with pytest.raises(UserError, match="unknown character 'nobody'"):
        character_images("nobody", 1)
