"""Hostile and careless input to the index: every case exits with one line and no traceback,
or succeeds, and nothing already indexed is lost.

The table `CASES` is (command, input) → (exit code, stderr pattern); each row runs on a copy of one
small published index. The acceptance test builds a generated hostile folder: a non-UTF-8 name, a
symlink loop, a dangling link, a FIFO, an unreadable file, a folder that cannot be listed and a file
deleted during the build.

Unreadable file: the tests run as root, and root reads a chmod-000 file anyway. The file is chmod 000
(so as any other user it really fails) and, for root, the build's `open` is patched to raise the
PermissionError a user would get for that one path (`os.scandir` likewise for the locked folder).
The FIFO named *.mp4 is a second entry that really fails for root: opening it would block forever,
so the scan must refuse it from its stat.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from storyreel import index
from storyreel.index import scan
from storyreel.synthetic import Shot, write_video

SIZE = (160, 120)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three small videos (one clip each) and one other video elsewhere."""
    root = tmp_path_factory.mktemp("videos")
    for n in range(3):
        write_video(root / f"v{n}.mp4", [Shot("pan-left", 30, 10 * n)], size=SIZE)
    other = tmp_path_factory.mktemp("other")
    write_video(other / "elsewhere.mp4", [Shot("static", 30, 99)], size=SIZE)
    return root, other


@pytest.fixture(scope="module")
def base_index(videos, embedder, tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "idx"
    index.build(videos[0], path, index.BuildSettings(preset="tiny"), embedder=embedder)
    return path


def snapshot(index_dir: Path) -> dict:
    """What a user relies on: clip rows and ids, their vectors, the errors table, the id counter."""
    with index.open_index(index_dir) as idx:
        rows = idx.clips()
        ids = [r.clip_id for r in rows]
        return {"rows": [r.to_dict() for r in rows], "errors": idx.errors(), "next_clip_id": idx.meta["next_clip_id"],
                "frames": {i: v.tolist() for i, v in idx.frame_vectors(ids).items()},
                "vectors": {i: idx.vector_index.reconstruct(i).tolist() for i in ids}}


@pytest.fixture
def cli(run_cli):
    return lambda *args: run_cli(*args, env={"STORYREEL_MODELS": "tiny"})


# --- the table ------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    setup: Callable[[Path], None]  # damages the copy of the index it is given
    args: list[str]  # {idx}, {videos}, {other}, {empty} are filled in
    code: int
    pattern: str  # regex that stderr must match (search)
    intact: bool = True  # the published index reads back exactly as before


def _write(name: str, data: bytes):
    return lambda idx: (idx / name).write_bytes(data)


def _damage(file: str, how: str):
    def setup(idx):
        path = idx / (idx / "CURRENT").read_text().strip() / file
        if how == "missing":
            path.unlink()
        else:
            data = path.read_bytes()
            path.write_bytes(b"" if how == "empty" else data[:len(data) // 10])
    return setup


def _nothing(idx):
    pass


def _damage_cases() -> list[Case]:
    """Every command on a truncated vectors file and a truncated or empty catalog (the cases that
    crashed every command); the build and one reader on the other damage."""
    commands = (["index", "stats", "--index", "{idx}"], ["index", "ls", "--index", "{idx}"],
                ["index", "errors", "--index", "{idx}"], ["index", "verify", "--index", "{idx}"],
                ["search", "a red car", "--index", "{idx}"], ["index", "build", "{videos}", "--index", "{idx}"])
    cases = []
    for file in ("vectors.faiss", "catalog.duckdb"):
        for how in ("truncated", "empty", "missing"):
            every = how == "truncated" or (how, file) == ("empty", "catalog.duckdb")
            for args in commands if every else (commands[0], commands[-1]):
                cases.append(Case(f"{how} {file}: {' '.join(args[:2])}", _damage(file, how), args, 1,
                                  rf"gen-000001/{re.escape(file)} is damaged \(.+\); rebuild it with "
                                  rf"`storyreel index build VIDEO_DIR --index .+ --repair`", intact=False))
    return cases


CASES = [
    # Data loss 1: a bad CURRENT. The build repairs it from the newest complete generation, deletes nothing.
    Case("CURRENT names a missing generation: build", _write("CURRENT", b"gen-000007\n"),
         ["index", "build", "{videos}", "--index", "{idx}"], 0,
         r"note: CURRENT named 'gen-000007', which is not a generation folder; repaired it to the newest "
         r"complete generation, gen-000001"),
    Case("CURRENT is binary garbage: build", _write("CURRENT", b"\xff\xfe\x00junk"),
         ["index", "build", "{videos}", "--index", "{idx}"], 0, r"repaired it to the newest complete generation"),
    Case("CURRENT is empty: build", _write("CURRENT", b""),
         ["index", "build", "{videos}", "--index", "{idx}"], 0,
         r"CURRENT was missing or empty; repaired it to the newest complete generation, gen-000001"),
    Case("CURRENT names a missing generation: stats", _write("CURRENT", b"gen-000007\n"),
         ["index", "stats", "--index", "{idx}"], 1,
         r"CURRENT names generation 'gen-000007', which is missing; rerun `storyreel index build VIDEO_DIR",
         intact=False),
    Case("a killed build's work copy is garbage: build",
         lambda idx: (idx / "staging").mkdir() or (idx / "staging" / "catalog.duckdb").write_bytes(b"junk" * 99),
         ["index", "build", "{videos}", "--index", "{idx}"], 0, r"\[index build\] files=0/0 clips=3 errors=0"),
    # Data loss 2: an empty or wrong folder would drop every video; the build stops first.
    Case("build from an empty folder", _nothing, ["index", "build", "{empty}", "--index", "{idx}"], 1,
         r"lacks 3 of the 3 files in the index .+; this build would drop them and their clip ids\. "
         r"Check VIDEO_DIR, or pass --allow-removals"),
    Case("build from the wrong folder", _nothing, ["index", "build", "{other}", "--index", "{idx}"], 1,
         r"lacks 3 of the 3 files .+--allow-removals"),
    # Numbers.
    Case("index build --min-seconds nan", _nothing,
         ["index", "build", "{videos}", "--index", "{idx}", "--min-seconds", "nan"], 1,
         r"clip lengths must be finite with 0 < --min-seconds \(nan\)"),
    Case("index build --max-seconds inf", _nothing,
         ["index", "build", "{videos}", "--index", "{idx}", "--max-seconds", "inf"], 1,
         r"clip lengths must be finite"),
    Case("search --min-seconds nan", _nothing, ["search", "a red car", "--index", "{idx}", "--min-seconds", "nan"],
         1, r"--min-seconds must be a finite number of seconds, 0 or more \(got nan\)"),
    Case("index build --index under a file", _nothing,
         ["index", "build", "{videos}", "--index", "{idx}/CURRENT/sub"], 1, r"is a file, or inside one"),
    # Damaged index files: one line in every command, build included.
    *_damage_cases(),
]


def _fill(args, idx, videos, other, empty):
    return [a.format(idx=idx, videos=videos, other=other, empty=empty) for a in args]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_gets_one_line(case, base_index, videos, tmp_path, cli):
    idx, empty = tmp_path / "idx", tmp_path / "empty"
    shutil.copytree(base_index, idx)
    empty.mkdir()
    before = snapshot(idx)
    gens_before = sorted(p.name for p in idx.glob("gen-*"))
    case.setup(idx)
    proc = cli(*_fill(case.args, idx, videos[0], videos[1], empty))
    assert proc.returncode == case.code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(case.pattern, proc.stderr), proc.stderr
    if case.code == 1:
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("storyreel: error: "), proc.stderr
    assert set(gens_before) <= {p.name for p in idx.glob("gen-*")}  # no generation deleted
    if case.intact:  # nothing lost: the same clips, ids and vectors
        assert snapshot(idx) == before


def test_build_from_a_folder_that_lost_most_videos_stops_and_keeps_the_index(videos, embedder, tmp_path, cli):
    folder = tmp_path / "videos"
    shutil.copytree(videos[0], folder)
    index.build(folder, tmp_path / "idx", index.BuildSettings(preset="tiny"), embedder=embedder)
    before = snapshot(tmp_path / "idx")
    for n in (0, 1):
        (folder / f"v{n}.mp4").unlink()
    proc = cli("index", "build", folder, "--index", tmp_path / "idx")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert re.search(r"lacks 2 of the 3 files .+ \(e\.g\. .+/v0\.mp4\).+--allow-removals", proc.stderr)
    assert snapshot(tmp_path / "idx") == before
    asked = cli("index", "build", folder, "--index", tmp_path / "idx", "--allow-removals", "--json")
    assert asked.returncode == 0, asked.stderr
    report = json.loads(asked.stdout)
    assert (report["removed"], report["videos"]) == (2, 1)
    with index.open_index(tmp_path / "idx") as idx:  # the kept video keeps its clip ids
        assert [r.to_dict() for r in idx.clips()] == [r for r in before["rows"] if r["video"].endswith("v2.mp4")]


@pytest.mark.parametrize("file", ["vectors.faiss", "catalog.duckdb"])
def test_repair_rebuilds_damaged_files_from_what_is_intact(file, base_index, videos, tmp_path, cli):
    idx = tmp_path / "idx"
    shutil.copytree(base_index, idx)
    before = snapshot(idx)
    _damage(file, "truncated")(idx)
    proc = cli("index", "build", videos[0], "--index", idx, "--repair", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert cli("index", "verify", "--index", idx).returncode == 0
    after = snapshot(idx)
    if file == "vectors.faiss":  # vectors come back from the catalog: nothing changes, nothing is decoded
        assert report["frames_decoded"] == 0 and after == before
        assert report["notes"][0].startswith("gen-000001/vectors.faiss was damaged (cannot be read: ")
        assert report["notes"][0].endswith("); rebuilt it from the frame vectors")
    else:  # the catalog is decoded again; new ids follow the old ones the vectors file still names
        old_ids = [r["clip_id"] for r in before["rows"]]
        new_ids = [r["clip_id"] for r in after["rows"]]
        assert report["new"] == 3 and len(new_ids) == len(old_ids)
        assert new_ids == list(range(max(old_ids) + 1, max(old_ids) + 1 + len(new_ids)))
        assert [r | {"clip_id": 0} for r in after["rows"]] == [r | {"clip_id": 0} for r in before["rows"]]
        assert f"rebuilt it by decoding every video again (new clip ids start at {max(old_ids) + 1})" in \
            report["notes"][0]


# --- the hostile folder (acceptance) --------------------------------------------------------------

def test_hostile_folder_indexes_every_good_video_and_lists_each_bad_entry(embedder, tmp_path, monkeypatch, cli):
    folder = tmp_path / "hostile"
    folder.mkdir()
    raw_name = os.fsencode(folder) + b"/caf\xe9.mp4"  # Latin-1 é: not UTF-8
    good = {os.fsdecode(raw_name), str(folder / "good.mp4"), str(folder / "slow_zoom.mp4")}
    write_video(os.fsdecode(raw_name), [Shot("pan-right", 30, 1)], size=SIZE)
    write_video(folder / "good.mp4", [Shot("tilt-up", 30, 2)], size=SIZE)
    write_video(folder / "slow_zoom.mp4", [Shot("zoom-in", 36, 3, speed=1.0)], size=SIZE)  # 1% per frame
    write_video(folder / "zz_deleted.mp4", [Shot("static", 30, 4)], size=SIZE)
    shutil.copy(folder / "good.mp4", folder / "unreadable.mp4")
    os.chmod(folder / "unreadable.mp4", 0)
    os.symlink("loop.mp4", folder / "loop.mp4")
    os.symlink(folder / "missing_target.mp4", folder / "dangling.mp4")
    os.mkfifo(folder / "fifo.mp4")
    (folder / "locked").mkdir()  # a subfolder we may not list (patched below, as for the unreadable file)
    write_video(folder / "locked" / "hidden.mp4", [Shot("static", 30, 5)], size=SIZE)

    def open_as_a_user(path, *args, **kwargs):  # root reads chmod-000 files; a user gets this
        if str(path).endswith("unreadable.mp4"):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    def scandir_as_a_user(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    real_scandir = os.scandir
    monkeypatch.setattr(scan, "open", open_as_a_user, raising=False)
    monkeypatch.setattr(os, "scandir", scandir_as_a_user)
    committed = []

    def delete_later_file(record):  # after the first commit: zz_deleted.mp4 sorts last, not decoded yet
        committed.append(record.file.path)
        if len(committed) == 1:
            os.unlink(folder / "zz_deleted.mp4")

    report = index.build(folder, tmp_path / "idx", index.BuildSettings(preset="tiny"), embedder=embedder,
                         on_video_committed=delete_later_file)
    assert (report.videos, report.errors) == (3, 6)

    errors = json.loads(cli("index", "errors", "--index", tmp_path / "idx", "--json").stdout)
    assert {Path(e["video"]).name: e["reason"] for e in errors} == {
        "dangling.mp4": f"dangling symlink (points to {folder / 'missing_target.mp4'})",
        "fifo.mp4": "not a regular file (a FIFO)",
        "locked": "cannot list the folder (Permission denied)",
        "loop.mp4": "symlink loop (points to loop.mp4)",
        "unreadable.mp4": "cannot read the file (Permission denied); check its permissions",
        "zz_deleted.mp4": "disappeared during the build (No such file or directory)",
    }
    ls = cli("index", "ls", "--index", tmp_path / "idx", "--json")
    assert ls.returncode == 0 and "Traceback" not in ls.stderr
    rows = json.loads(ls.stdout)
    assert {r["video"] for r in rows} == good  # the non-UTF-8 name comes back byte for byte
    assert {r["motion"] for r in rows if r["video"].endswith("slow_zoom.mp4")} == {"zoom-in"}
    text = cli("index", "ls", "--index", tmp_path / "idx")
    assert "caf\\xe9.mp4" in text.stdout and text.returncode == 0  # printable on any terminal
    with index.open_index(tmp_path / "idx") as idx:
        clip = next(r for r in idx.clips() if r.video == os.fsdecode(raw_name))
        assert idx.read_frames(clip.clip_id, [0]).shape == (1, SIZE[1], SIZE[0], 3)
    # A rerun finds every stored path again (the non-UTF-8 one too): nothing is decoded, nothing retried.
    again = index.build(folder, tmp_path / "idx", index.BuildSettings(preset="tiny"), embedder=embedder)
    assert (again.frames_decoded, again.unchanged, again.removed) == (0, 8, 1)


# --- variable frame rate --------------------------------------------------------------------------

def test_clip_times_of_a_variable_frame_rate_video_come_from_frame_timestamps(embedder, tmp_path):
    import imageio_ffmpeg

    write_video(tmp_path / "cfr.mp4", [Shot("pan-left", 30, 5), Shot("static", 30, 6)], size=SIZE)
    (tmp_path / "videos").mkdir()
    # The first 30 frames last 1/12 s each, the next 30 1/24 s: 2.5 s + 1.25 s, average 16 fps.
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(tmp_path / "cfr.mp4"),
                    "-vf", "setpts='if(lt(N,30),2*N,N+30)/24/TB'", "-fps_mode", "passthrough", "-c:v", "libx264",
                    str(tmp_path / "videos" / "vfr.mp4")], check=True)
    index.build(tmp_path / "videos", tmp_path / "idx", index.BuildSettings(preset="tiny"), embedder=embedder)
    with index.open_index(tmp_path / "idx") as idx:
        rows = idx.clips()
    assert [(r.start_frame, r.end_frame) for r in rows] == [(0, 30), (30, 60)]
    assert [t for r in rows for t in (r.start_s, r.end_s)] == pytest.approx([0.0, 2.5, 2.5, 3.75], abs=1e-6)
    assert rows[1].start_s != pytest.approx(30 / rows[1].fps, abs=0.1)  # what frame ÷ average fps said
