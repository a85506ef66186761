"""Depth cache end to end against a REAL index (tests/test_depth_source.py uses `MemoryIndex`).

Acceptance: a second request for the same clip does no inference (asserted on the model's
counters), and a re-indexed clip gets fresh depth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from storyreel import index
from storyreel.core.errors import UserError
from storyreel.synthetic import Shot, make_corpus, write_video

SIZE, FRAMES = (64, 64), 8


@pytest.fixture
def corpus(tmp_path):
    """Two synthetic videos (2 shots each) indexed with the tiny preset, per test: the tests write depth
    into the index and rewrite a video. Built before any depth decoding so torch is imported ahead of
    decord (see the note in the tests' git history)."""
    make_corpus(tmp_path / "videos", num_videos=2, shots_per_video=2, shot_seconds=1.5, size=(128, 72), fps=12)
    index.build(tmp_path / "videos", tmp_path / "index", index.BuildSettings(preset="tiny"))
    return tmp_path


@pytest.fixture(scope="module")
def model():
    from storyreel.depth import create_depth_model

    return create_depth_model("tiny", device="cpu")


def clips_by_video(index_dir: Path) -> dict[str, list]:
    with index.open_index(index_dir) as idx:
        out: dict[str, list] = {}
        for row in idx.clips():
            out.setdefault(Path(row.video).name, []).append(row)
        return out


def cache_files(index_dir: Path) -> set[str]:
    return {p.name for p in (index_dir / "depth_cache").glob("*.npy")}


def test_unknown_clip_id_is_a_one_line_user_error(corpus, model, run_cli):
    from storyreel.depth import conditioning_for_source

    index_dir = corpus / "index"
    with index.open_index(index_dir) as idx:
        missing = max(row.clip_id for row in idx.clips()) + 1000
        with pytest.raises(UserError) as err:
            idx.clip(missing)
        assert str(err.value) == f"clip id {missing} is not in the index {index_dir.resolve()}"
    calls = model.predict_calls
    with pytest.raises(UserError) as err:
        conditioning_for_source(missing, model=model, size=SIZE, num_frames=FRAMES, index_dir=index_dir)
    assert str(err.value) == f"clip id {missing} is not in the index {index_dir.resolve()}"
    assert "\n" not in str(err.value) and model.predict_calls == calls
    # `depth --index` without --models: the index records its model (tiny), whose depth model it uses
    proc = run_cli("depth", str(missing - 1000), "--index", index_dir, "--out", corpus / "clip.mp4", "--json",
                   env={"STORYREEL_MODELS": "default"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "tiny-seed0"


def cache_name(clip, model, info) -> str:
    """The cache file of a clip's depth: clip, model, size, the frames read (their window) and the video."""
    window = f"f{len(info['frame_indices'])}w{info['frame_indices'][0]}-{info['frame_indices'][-1]}"
    return f"clip{clip.clip_id}_{model.model_id}_{SIZE[0]}x{SIZE[1]}_{window}_{clip.video_fingerprint}.npy"


def test_clip_depth_cached_in_real_index_and_refreshed_after_reindex(corpus, model):
    from storyreel.depth import conditioning_for_source

    videos, index_dir = corpus / "videos", corpus / "index"
    before = clips_by_video(index_dir)
    assert sorted(before) == ["video_000.mp4", "video_001.mp4"]
    kept, changed = before["video_000.mp4"][0], before["video_001.mp4"][0]
    assert kept.end_frame - kept.start_frame >= FRAMES and changed.end_frame - changed.start_frame >= FRAMES

    def request(clip_id, size=SIZE, num_frames=FRAMES, source=None):
        calls, frames = model.predict_calls, model.frames_predicted
        cond, info = conditioning_for_source(clip_id if source is None else source, model=model, size=size,
                                             num_frames=num_frames, index_dir=index_dir)
        return cond, info, model.predict_calls - calls, model.frames_predicted - frames

    # 1. First request: a miss that runs inference and writes one cache file named after the clip.
    cond_kept, info, calls, frames = request(kept.clip_id)
    assert info["cache"] == "miss" and info["clip_id"] == kept.clip_id and info["kind"] == "clip"
    assert calls == 1 and frames == FRAMES  # FRAMES distinct frames of a longer clip
    assert cond_kept.shape == (FRAMES, 3, *SIZE)
    assert float(cond_kept.min()) >= 0.0 and float(cond_kept.max()) <= 1.0
    assert float(cond_kept.max() - cond_kept.min()) > 0  # real, input-dependent depth, not a constant
    kept_file = cache_name(kept, model, info)
    assert cache_files(index_dir) == {kept_file}

    # 2. The identical request (clip id as a digit string too): a hit, no inference, identical tensor.
    for source in (kept.clip_id, str(kept.clip_id)):
        again, info, calls, frames = request(kept.clip_id, source=source)
        assert info["cache"] == "hit" and calls == 0 and frames == 0
        assert np.array_equal(again.numpy(), cond_kept.numpy())

    # 3. Another size or another frame count is another cache entry: a miss with inference.
    _, info, calls, _ = request(kept.clip_id, size=(32, 48))
    assert info["cache"] == "miss" and calls == 1
    _, info, calls, _ = request(kept.clip_id, num_frames=FRAMES // 2)
    assert info["cache"] == "miss" and calls == 1
    _, info, calls, _ = request(kept.clip_id, size=(32, 48))
    assert info["cache"] == "hit" and calls == 0

    # The clip of the video we are about to change, cached under its old id and fingerprint.
    cond_old, info, calls, _ = request(changed.clip_id)
    assert info["cache"] == "miss" and calls == 1
    old_file = cache_name(changed, model, info)
    assert old_file in cache_files(index_dir)
    old_depth = np.load(index_dir / "depth_cache" / old_file)

    # 4. Overwrite one video with different content and re-index.
    write_video(videos / "video_001.mp4", [Shot("pan-right", 20, scene_seed=901), Shot("static", 18, scene_seed=902)],
                fps=12, size=(128, 72))
    report = index.build(videos, index_dir, index.BuildSettings(preset="tiny"))
    assert (report.changed, report.unchanged) == (1, 1)
    after = clips_by_video(index_dir)
    # The untouched video keeps its clip ids; the changed one gets new ids (ids are never reused).
    assert [c.clip_id for c in after["video_000.mp4"]] == [c.clip_id for c in before["video_000.mp4"]]
    assert after["video_000.mp4"][0].video_fingerprint == kept.video_fingerprint
    old_ids = {c.clip_id for rows in before.values() for c in rows}
    new = after["video_001.mp4"][0]
    assert {c.clip_id for c in after["video_001.mp4"]}.isdisjoint(old_ids)
    assert new.video_fingerprint != changed.video_fingerprint

    # 5. The untouched video's clip is still a hit in the new index generation.
    again, info, calls, _ = request(kept.clip_id)
    assert info["cache"] == "hit" and calls == 0
    assert np.array_equal(again.numpy(), cond_kept.numpy())

    # 6. The changed video's clip is a miss with fresh inference, and its depth is not the old depth.
    fresh, info, calls, frames = request(new.clip_id)
    assert info["cache"] == "miss" and info["clip_id"] == new.clip_id and calls == 1 and frames == FRAMES
    new_file = cache_name(new, model, info)
    assert new_file in cache_files(index_dir)
    new_depth = np.load(index_dir / "depth_cache" / new_file)
    assert new_depth.shape == old_depth.shape == (FRAMES, *SIZE)
    assert not np.allclose(new_depth, old_depth, atol=1e-3)
    assert not np.allclose(fresh.numpy(), cond_old.numpy(), atol=1e-3)
    assert np.array_equal(fresh[:, 0].numpy(), new_depth)
    _, info, calls, _ = request(new.clip_id)
    assert info["cache"] == "hit" and calls == 0

    # 7. The old clip left the index: a request for it is a one-line UserError, and writing the new
    #    clip's depth removed the old clip's file (no cache files pile up across re-indexing).
    with pytest.raises(UserError) as err:
        request(changed.clip_id)
    assert str(err.value) == f"clip id {changed.clip_id} is not in the index {index_dir.resolve()}"
    with index.open_index(index_dir) as idx:
        live = {(c.clip_id, c.video_fingerprint) for c in idx.clips()}
    assert (changed.clip_id, changed.video_fingerprint) not in live
    assert old_file not in cache_files(index_dir)
    # Every cache file names a live (clip id, fingerprint) pair.
    for name in cache_files(index_dir):
        clip_part, fingerprint = name[:-len(".npy")].split("_")[0], name[:-len(".npy")].rsplit("_", 1)[1]
        assert (int(clip_part[len("clip"):]), fingerprint) in live
