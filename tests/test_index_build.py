"""Index builder: determinism, incremental runs, bad files, crash safety, read API and CLI shapes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from storyreel import index
from storyreel.core import video as video_module
from storyreel.core.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FPS = 24
SIZE = (160, 120)
CLIP_ROW_FIELDS = {"clip_id", "video", "start_frame", "end_frame", "start_s", "end_s", "fps", "width",
                   "height", "motion", "motion_magnitude"}


def write_video(path, seed: int, frames: int = 60, cut: int = 30) -> None:
    """A textured H.264 video: the camera slides right 2 px/frame over scene A, hard cut at `cut` to scene B."""
    import imageio.v2 as imageio

    rng = np.random.default_rng(seed)
    w, h = SIZE
    scenes = [rng.integers(0, 256, size=(h // 8, (w + 2 * frames) // 8 + 1, 3), dtype=np.uint8)
              .repeat(8, 0).repeat(8, 1) for _ in range(2)]
    writer = imageio.get_writer(str(path), fps=FPS, codec="libx264", pixelformat="yuv420p", macro_block_size=2,
                                ffmpeg_log_level="error", output_params=["-crf", "18"])
    for i in range(frames):
        scene = scenes[0] if i < cut else scenes[1]
        writer.append_data(np.ascontiguousarray(scene[:, 2 * i:2 * i + w]))
    writer.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three good videos, one in a subfolder with an upper-case extension, plus a non-video file."""
    root = tmp_path_factory.mktemp("corpus")
    write_video(root / "a.mp4", seed=1)
    write_video(root / "b.mp4", seed=2, frames=72)
    (root / "sub").mkdir()
    write_video(root / "sub" / "c.MOV", seed=3)
    (root / "notes.txt").write_text("not a video")
    return root


def build(video_dir, index_dir, embedder, **settings):
    return index.build(video_dir, index_dir, index.BuildSettings(preset="tiny", **settings), embedder=embedder)


def snapshot(index_dir):
    """Everything a clean build determines: rows, per-frame and FAISS vectors, errors, id counter."""
    with index.open_index(index_dir) as idx:
        rows = idx.clips()
        ids = [r.clip_id for r in rows]
        frame_vectors = idx.frame_vectors(ids)
        faiss_vectors = {i: idx.vector_index.reconstruct(i) for i in ids}
        return {
            "rows": rows,
            "frames": {i: frame_vectors[i].tolist() for i in ids},
            "faiss": {i: v.tolist() for i, v in faiss_vectors.items()},
            "errors": idx.errors(),
            "next_clip_id": idx.meta["next_clip_id"],
            "model_id": idx.model_id,
        }


def count_decoder_opens(monkeypatch):
    calls = []
    real = video_module._reader
    monkeypatch.setattr(video_module, "_reader", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    return calls


# --- Python API -----------------------------------------------------------------------------------

def test_two_clean_builds_are_identical_and_readable(corpus, embedder, tmp_path):
    report = build(corpus, tmp_path / "one", embedder)
    build(corpus, tmp_path / "two", embedder)
    one, two = snapshot(tmp_path / "one"), snapshot(tmp_path / "two")
    assert one["frames"] == two["frames"] and one["faiss"] == two["faiss"]
    assert [r.to_dict() | {"video": 0} for r in one["rows"]] == [r.to_dict() | {"video": 0} for r in two["rows"]]

    rows = one["rows"]
    assert report.videos == 3 and report.new == 3 and report.errors == 0 and report.clips == len(rows)
    # ids 0..n-1 assigned in sorted path order; every video has clips that tile it inside its frames
    assert [r.clip_id for r in rows] == list(range(len(rows)))
    videos = [r.video for r in rows]
    assert videos == sorted(videos)
    assert sorted(set(videos)) == sorted(str(p) for p in [corpus / "a.mp4", corpus / "b.mp4", corpus / "sub" / "c.MOV"])
    for r in rows:
        assert (r.fps, r.width, r.height) == (FPS, *SIZE)
        assert 0 <= r.start_frame < r.end_frame <= (72 if r.video.endswith("b.mp4") else 60)
        assert r.start_s == pytest.approx(r.start_frame / FPS) and r.end_s == pytest.approx(r.end_frame / FPS)
        assert r.end_frame - r.start_frame >= FPS  # min clip 1 s
    # the FAISS vector is the normalized mean of the clip's K=8 per-frame vectors
    for cid in range(len(rows)):
        frames = np.array(one["frames"][cid], dtype=np.float32)
        assert frames.shape == (8, embedder.dim)
        mean = frames.mean(0)
        np.testing.assert_allclose(one["faiss"][cid], mean / np.linalg.norm(mean), atol=1e-6)
    # The mapper alone (what a Ray worker would run on one file) reproduces the build's clips.
    from storyreel.index import BuildSettings
    from storyreel.index.mapper import map_video
    from storyreel.index.scan import find_videos

    file = next(f for f in find_videos(corpus) if f.path.endswith("a.mp4"))
    record = map_video(file, BuildSettings(), embedder)
    a_rows = [r for r in rows if r.video == file.path]
    assert [(c.start_frame, c.end_frame, c.motion) for c in record.clips] == \
        [(r.start_frame, r.end_frame, r.motion) for r in a_rows]
    for clip, row in zip(record.clips, a_rows):
        np.testing.assert_allclose(clip.frame_vectors, one["frames"][row.clip_id], atol=1e-5)

    with index.open_index(tmp_path / "one") as idx:
        assert (idx.model_id, idx.dim, idx.index_type) == ("open_clip:tiny:seed0", 64, "Flat")
        assert idx.verify() == []
        # search by a clip's own vector finds it first
        last = rows[-1].clip_id
        ids, scores = idx.search_vectors(idx.vector_index.reconstruct(last), 3)
        assert ids[0] == last and scores[0] == pytest.approx(1.0, abs=1e-5)
        assert idx.clip(last) == rows[-1]
        with pytest.raises(UserError, match=f"clip id 999 is not in the index {tmp_path / 'one'}"):
            idx.clip(999)


def test_read_frames_returns_source_frames_of_the_clip(corpus, embedder, tmp_path):
    import imageio.v2 as imageio

    build(corpus, tmp_path / "idx", embedder)
    with index.open_index(tmp_path / "idx") as idx:
        row = [r for r in idx.clips() if r.video.endswith("b.mp4")][-1]
        source = np.stack(imageio.mimread(row.video))  # every frame, decoded by ffmpeg itself
        got = idx.read_frames(row.clip_id, [5, 0, 3])
        assert got.shape == (3, SIZE[1], SIZE[0], 3) and got.dtype == np.uint8
        for frame, rel in zip(got, [5, 0, 3]):
            diffs = np.abs(source.astype(int) - frame.astype(int)).mean(axis=(1, 2, 3))
            assert int(np.argmin(diffs)) == row.start_frame + rel and diffs.min() < 3
        assert idx.read_frames(row.clip_id).shape[0] == row.end_frame - row.start_frame


def test_unchanged_rerun_decodes_nothing_and_changes_are_incremental(corpus, embedder, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    shutil.copytree(corpus, videos)
    first = build(videos, tmp_path / "idx", embedder)
    before = snapshot(tmp_path / "idx")
    ids_of = lambda snap, name: [r.clip_id for r in snap["rows"] if r.video.endswith(name)]  # noqa: E731

    opens = count_decoder_opens(monkeypatch)
    again = build(videos, tmp_path / "idx", embedder)
    assert opens == [] and again.frames_decoded == 0 and again.unchanged == 3
    assert again.generation == first.generation and snapshot(tmp_path / "idx") == before

    # touched (mtime only): fingerprint matches, still nothing decoded, ids kept
    os.utime(videos / "a.mp4", ns=(1, 1))
    assert build(videos, tmp_path / "idx", embedder).unchanged == 3 and opens == []
    assert snapshot(tmp_path / "idx")["rows"] == before["rows"]

    # change c, remove b, add d
    write_video(videos / "sub" / "c.MOV", seed=33)
    (videos / "b.mp4").unlink()
    write_video(videos / "d.mp4", seed=4)
    report = build(videos, tmp_path / "idx", embedder)
    after = snapshot(tmp_path / "idx")
    assert sorted(set(opens)) == sorted([str(videos / "d.mp4"), str(videos / "sub" / "c.MOV")])
    assert (report.new, report.changed, report.removed, report.unchanged) == (1, 1, 1, 1)
    assert ids_of(after, "a.mp4") == ids_of(before, "a.mp4")
    rows_of_a = lambda snap: [r for r in snap["rows"] if r.video.endswith("a.mp4")]  # noqa: E731
    assert rows_of_a(after) == rows_of_a(before)
    assert ids_of(after, "b.mp4") == []
    old_next = int(before["next_clip_id"])
    new_ids = ids_of(after, "c.MOV") + ids_of(after, "d.mp4")
    # new ids continue the counter in sorted path order (d.mp4 < sub/c.MOV), never reusing old ones
    assert sorted(new_ids) == list(range(old_next, old_next + len(new_ids)))
    assert ids_of(after, "d.mp4")[0] == old_next
    c_rows = [r for r in after["rows"] if r.video.endswith("c.MOV")]
    assert c_rows[0].video_fingerprint != [r for r in before["rows"] if r.video.endswith("c.MOV")][0].video_fingerprint
    with index.open_index(tmp_path / "idx") as idx:
        assert idx.verify() == [] and idx.vector_index.ntotal == len(after["rows"])
        assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["CURRENT", "build.lock", report.generation]


def test_bad_files_are_listed_and_good_ones_indexed(corpus, embedder, tmp_path):
    import imageio.v2 as imageio

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(corpus / "a.mp4", videos / "good1.mp4")
    shutil.copy(corpus / "b.mp4", videos / "good2.mp4")
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("this is not a video\n" * 50)
    data = (corpus / "b.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])
    writer = imageio.get_writer(str(videos / "one_frame.mp4"), fps=FPS, codec="libx264", pixelformat="yuv420p",
                                macro_block_size=2, ffmpeg_log_level="error")
    writer.append_data(np.full((SIZE[1], SIZE[0], 3), 128, np.uint8))
    writer.close()
    write_video(videos / "too_short.mp4", seed=5, frames=12, cut=100)  # 0.5 s: shorter than any clip

    report = build(videos, tmp_path / "idx", embedder)
    assert report.videos == 2 and report.errors == 5
    with index.open_index(tmp_path / "idx") as idx:
        assert {os.path.basename(r.video) for r in idx.clips()} == {"good1.mp4", "good2.mp4"}
        reasons = {os.path.basename(e["video"]): e["reason"] for e in idx.errors()}
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["text.mp4"].startswith("not a readable video")
    assert reasons["truncated.mp4"].startswith("not a readable video")
    assert reasons["one_frame.mp4"] == "has 1 frame(s); at least 2 are needed"
    assert reasons["too_short.mp4"] == "no clip: 0.50 s of video is shorter than the minimum clip length 1 s"
    # unchanged bad files are not retried
    assert build(videos, tmp_path / "idx", embedder).frames_decoded == 0


# --- command line ---------------------------------------------------------------------------------

@pytest.fixture
def cli(run_cli):
    """`storyreel ARGS...` (in-process, see conftest.run_cli) with the tiny preset as the default."""
    return lambda *args, env=None: run_cli(*args, env={"STORYREEL_MODELS": "tiny", **(env or {})})


def test_cli_json_shapes_and_verify_on_tampered_index(corpus, embedder, tmp_path, cli):
    build(corpus, tmp_path / "idx", embedder)
    idx_dir = tmp_path / "idx"
    stats = json.loads(cli("index", "stats", "--index", idx_dir, "--json").stdout)
    assert {k: stats[k] for k in ("videos", "errors", "model_id", "index_type", "dim")} == {
        "videos": 3, "errors": 0, "model_id": "open_clip:tiny:seed0", "index_type": "Flat", "dim": 64}
    rows = json.loads(cli("index", "ls", "--index", idx_dir, "--json").stdout)
    assert len(rows) == stats["clips"] and CLIP_ROW_FIELDS <= set(rows[0])
    assert [r["clip_id"] for r in rows] == list(range(len(rows)))
    assert json.loads(cli("index", "errors", "--index", idx_dir, "--json").stdout) == []
    ok = cli("index", "verify", "--index", idx_dir)
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok: {len(rows)} clips")

    # tamper: drop a clip row from the published catalog behind the index's back
    import duckdb

    generation = (idx_dir / "CURRENT").read_text().strip()
    con = duckdb.connect(str(idx_dir / generation / "catalog.duckdb"))
    con.execute("DELETE FROM clips WHERE clip_id = 1")
    con.close()
    bad = cli("index", "verify", "--index", idx_dir)
    assert bad.returncode == 1
    assert "1 vector id(s) have no catalog clip, e.g. id 1" in bad.stderr

    missing = cli("index", "stats", "--index", tmp_path / "nope")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "is not a storyreel index" in missing.stderr


def test_missing_default_weights_exit_1_with_one_line(corpus, tmp_path, cli, monkeypatch):
    from huggingface_hub import constants

    # An empty Hugging Face cache (huggingface_hub reads HF_HOME / HF_HUB_CACHE when it is imported).
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    proc = cli("index", "build", corpus, "--index", tmp_path / "idx", "--models", "default",
               env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")})
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("storyreel: error: missing weights for CLIP")
    assert not (tmp_path / "idx").exists()


def test_killed_build_resumes_to_clean_build_and_readers_see_last_commit(corpus, embedder, tmp_path, cli):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(corpus / "a.mp4", videos / "a.mp4")
    build(videos, tmp_path / "idx", embedder)  # published generation 1: just a.mp4
    published = snapshot(tmp_path / "idx")
    shutil.copy(corpus / "b.mp4", videos / "b.mp4")
    shutil.copy(corpus / "sub" / "c.MOV", videos / "c.mp4")
    write_video(videos / "d.mp4", seed=9)

    # A reader in another process searches in a loop through the build, the kill and the resume
    # (tests/search_loop.py): it must never fail and always see one complete generation.
    stop = tmp_path / "stop-reader"
    reader = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "search_loop.py"), str(tmp_path / "idx"),
                               "--stop", str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO)
    # The real build in its own process, pausing 30 s after each committed video (tests/slow_build.py).
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "slow_build.py"), str(videos), "--index",
                             str(tmp_path / "idx"), "--models", "tiny", "--pause", "30"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # first progress line = first video committed
            if "files=1/3" in line or time.monotonic() > deadline:
                break
        assert "files=1/3" in line
        assert snapshot(tmp_path / "idx") == published  # a reader during the build sees the last commit
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert snapshot(tmp_path / "idx") == published
    assert (tmp_path / "idx" / "staging").is_dir()

    resumed = cli("index", "build", videos, "--index", tmp_path / "idx", "--json")
    assert resumed.returncode == 0, resumed.stderr
    time.sleep(0.5)  # let the reader see the new generation too
    stop.write_text("")
    out, err = reader.communicate(timeout=60)
    passes = [json.loads(line) for line in out.splitlines()]
    assert reader.returncode == 0 and [p for p in passes if "error" in p] == [], err[-2000:]
    seen = {}
    for p in passes:  # each generation looked the same every time it was read
        assert seen.setdefault(p["generation"], (p["clips"], p["digest"])) == (p["clips"], p["digest"])
    published_gen = (tmp_path / "idx" / "CURRENT").read_text().strip()
    assert len(seen) == 2 and published_gen in seen and seen[published_gen][0] > len(published["rows"])
    report = json.loads(resumed.stdout)
    assert report["new"] == 2  # b.mp4 was committed before the kill and is not decoded again
    # a clean build: a.mp4 sorts first, so one build over the final folder assigns the same ids
    clean = build(videos, tmp_path / "clean", embedder)
    assert clean.clips == report["clips"]
    assert snapshot(tmp_path / "idx") == snapshot(tmp_path / "clean")
