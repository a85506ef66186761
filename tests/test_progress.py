"""Progress: tqdm bars with ETA on a terminal, plain lines without control codes elsewhere, --quiet."""

from __future__ import annotations

import contextlib
import io
import re

from storyreel.core.progress import Progress

ETA = re.compile(r"\[\d\d:\d\d<\d\d:\d\d")  # tqdm's "[elapsed<remaining" (the ETA)
CONTROL = re.compile(r"[\r\x1b]")


class Terminal(io.StringIO):
    """What a terminal's stderr looks like to storyreel: isatty() is true (no size: tqdm gets 100x24)."""

    def isatty(self) -> bool:
        return True


def test_plain_lines_count_with_eta_and_no_control_codes():
    stream = io.StringIO()
    progress = Progress("index build", every_s=0, stream=stream)
    progress.update(files=0, of=3)
    for done in range(1, 4):
        progress.update(files=done, of=3, clips=done * 2, last=f"v{done}.mp4")
    progress.child("frames").update(frames=10, of=40)
    progress.done(files=3, of=3, seconds=1.5)
    lines = stream.getvalue().splitlines()
    assert not CONTROL.search(stream.getvalue())
    assert lines[0] == "[index build] files=0/3"
    assert re.fullmatch(r"\[index build\] files=1/3 clips=2 last=v1\.mp4 eta=\d+:\d\d", lines[1])
    assert re.fullmatch(r"\[index build\] files=2/3 clips=4 last=v2\.mp4 eta=\d+:\d\d", lines[2])
    assert lines[3] == "[index build] files=3/3 clips=6 last=v3.mp4"  # done: no ETA
    assert lines[4] == "[index build > frames] frames=10/40"
    assert lines[5] == "[index build] files=3/3 seconds=1.5"


def test_plain_lines_are_rate_limited_unless_forced():
    stream = io.StringIO()
    progress = Progress("depth", every_s=60, stream=stream)
    for done in range(1, 6):
        progress.update(frames=done, of=5)
    progress.done(frames=5, out="d.mp4")
    assert stream.getvalue().splitlines() == ["[depth] frames=1/5", "[depth] frames=5 out=d.mp4"]


def test_terminal_gets_a_bar_with_eta_and_a_nested_bar_quiet_gets_nothing():
    stream = Terminal()
    progress = Progress("render", stream=stream)
    steps = progress.child("steps")
    progress.update(force=True, plot=1, of=2, stage="generate")
    for step in range(1, 5):
        steps.update(steps=step, of=4)
    steps.close()
    progress.done(plot=2, of=2, stage="write")
    out = stream.getvalue()
    assert "\r" in out and ETA.search(out)
    assert re.search(r"render: 100%.*2/2", out) and "stage=write" in out
    assert re.search(r"render > steps:.*4/4", out)  # the nested bar ran to the end

    quiet = Terminal()
    Progress("render", stream=quiet, quiet=True).done(plot=1, of=1)
    assert quiet.getvalue() == ""


def cli(*args) -> tuple[int, str]:
    """(exit status, stderr) of `storyreel ARGS` run in this process with a terminal as stderr (set inside the
    test: pytest's capture resets sys.stderr between a fixture's setup and the test)."""
    from storyreel.cli import main

    stream = Terminal()
    with contextlib.redirect_stderr(stream):
        code = main([str(a) for a in args])
    return code, stream.getvalue()


def test_index_build_shows_bars_with_eta_on_a_terminal_and_nothing_with_quiet(tmp_path, capsys):
    from storyreel.synthetic import make_corpus

    make_corpus(tmp_path / "videos", num_videos=2, shots_per_video=2, shot_seconds=1.5, size=(64, 48), fps=12)
    code, build = cli("index", "build", tmp_path / "videos", "--index", tmp_path / "index", "--models", "tiny")
    assert code == 0
    assert re.search(r"index build: 100%.*2/2", build) and ETA.search(build)
    assert re.search(r"index build > frames:.*35/35", build)  # frames within a file, in a nested bar

    # A rerun (nothing to decode) shows a bar too, unless --quiet.
    code, quiet = cli("index", "build", tmp_path / "videos", "--index", tmp_path / "index", "--models", "tiny",
                      "--quiet")
    assert code == 0 and quiet == ""  # --quiet: no bar, no note
    assert "2 videos" in capsys.readouterr().out.splitlines()[-1]


def test_an_error_after_a_bar_starts_on_its_own_line(tmp_path, monkeypatch):
    import importlib

    from storyreel.core.errors import UserError
    from storyreel.synthetic import make_corpus

    def fail(record):
        raise UserError("disk full")

    make_corpus(tmp_path / "videos", num_videos=1, shots_per_video=2, shot_seconds=1.5, size=(64, 48), fps=12)
    runner = importlib.import_module("storyreel.index.runner")
    real_build = runner.build
    monkeypatch.setattr(runner, "build", lambda *a, **k: real_build(*a, **k, on_video_committed=fail))
    code, stderr = cli("index", "build", tmp_path / "videos", "--index", tmp_path / "index", "--models", "tiny")
    assert code == 1 and "files" in stderr
    assert stderr.endswith("\nstoryreel: error: disk full\n")  # the bars were closed first
