"""`index build --engine ray`: the mapper on a local Ray (2 CPUs, started by the test) gives the same
catalog as the local engine: same clip ids and rows, per-frame vectors within 1e-6."""

from __future__ import annotations

import sys

import numpy as np


def test_ray_engine_builds_the_same_catalog_as_the_local_engine(tmp_path, run_cli):
    from storyreel import index
    from storyreel.synthetic import make_corpus

    make_corpus(tmp_path / "videos", num_videos=2, shots_per_video=2, shot_seconds=1.5, size=(64, 48), fps=12)
    had_ray = "ray" in sys.modules
    local = index.build(tmp_path / "videos", tmp_path / "local", index.BuildSettings(preset="tiny"))
    assert had_ray or "ray" not in sys.modules  # the local engine never imports Ray
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:  # the build uses the running Ray (one mapper actor: the test's time is mostly Ray's start)
        proc = run_cli("index", "build", tmp_path / "videos", "--index", tmp_path / "ray", "--engine", "ray",
                       "--models", "tiny", "--json", check=True)
    finally:
        ray.shutdown()
    assert '"clips": ' + str(local.clips) in proc.stdout
    with index.open_index(tmp_path / "local") as a, index.open_index(tmp_path / "ray") as b:
        rows_a, rows_b = a.clips(), b.clips()
        assert [r.clip_id for r in rows_a] == [r.clip_id for r in rows_b] == list(range(local.clips))
        assert rows_a == rows_b
        ids = [r.clip_id for r in rows_a]
        va, vb = a.frame_vectors(ids), b.frame_vectors(ids)
        for cid in ids:
            np.testing.assert_allclose(va[cid], vb[cid], atol=1e-6, rtol=0)
        for cid in ids:
            np.testing.assert_allclose(a.vector_index.reconstruct(cid), b.vector_index.reconstruct(cid), atol=1e-6)
    bad = run_cli("index", "build", tmp_path / "videos", "--index", tmp_path / "x", "--address", "1.2.3.4:6379",
                  "--models", "tiny")
    assert bad.returncode == 1 and "use it with --engine ray" in bad.stderr
