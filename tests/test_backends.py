"""Both backends from the command line: t2v-zero with and without a structure, and eval side by side."""

from __future__ import annotations

import json

import numpy as np

from storyreel.core.writers import write_video

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def depth_video(path, frames: int = 8, size: int = 64) -> None:
    ramp = np.linspace(0, 255, size)[None, :].repeat(size, 0)
    depth = np.stack([np.roll(ramp, 2 * k, axis=1) for k in range(frames)]).round().astype(np.uint8)
    write_video(np.repeat(depth[..., None], 3, axis=-1), path, metadata={"kind": "depth"})


def test_both_backends_generate_from_one_depth_and_eval_compares_them(run_cli, tmp_path):
    source = tmp_path / "walk_depth.mp4"
    depth_video(source)
    common = ["--prompt", "a red ball rolls", "--structure", source, "--models", "tiny", "--frames", "8",
              "--steps", "2", "--tau", "1", "--json"]
    outputs = {}
    for backend in ("animatediff", "t2v-zero"):
        out = tmp_path / f"{backend}.gif"
        proc = run_cli("generate", *common, "--out", out, "--backend", backend, env=ONE_THREAD)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["backend"] == backend and summary["structure_forward_passes"] == 2
        assert ("motion_adapter" in summary["components"]) == (backend == "animatediff")
        outputs[backend] = out
    proc = run_cli("eval", *outputs.values(), "--prompt", "a red ball rolls", "--models", "tiny", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["clip"], r["backend"], r["frames"]) for r in rows] == [
        (str(outputs["animatediff"]), "animatediff", 8), (str(outputs["t2v-zero"]), "t2v-zero", 8)]
    assert all(np.isfinite([r["clip_t"], r["temporal_consistency"], r["motion_magnitude"]]).all() for r in rows)
    text = run_cli("eval", *outputs.values(), "--prompt", "a red ball rolls", "--models", "tiny")
    assert text.returncode == 0 and [line.split()[1] for line in text.stdout.splitlines()[2:]] == [
        "animatediff", "t2v-zero"]


def test_t2v_zero_needs_no_structure_and_animatediff_says_it_does(run_cli, tmp_path):
    out = tmp_path / "zero.gif"
    proc = run_cli("generate", "--prompt", "a red ball rolls", "--out", out, "--models", "tiny", "--backend",
                   "t2v-zero", "--frames", "4", "--steps", "4", "--t0", "1", "--t1", "2", "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["structure"] == {"kind": "none"} and summary["structure_forward_passes"] == 0
    assert summary["frames"] == 4 and (summary["t0"], summary["t1"]) == (1, 2)
    proc = run_cli("generate", "--prompt", "a red ball", "--out", tmp_path / "a.gif", "--models", "tiny")
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "storyreel: error: --structure is required for the animatediff backend "
        "(only t2v-zero can generate from the prompt alone)")
    assert not (tmp_path / "a.gif").exists()
