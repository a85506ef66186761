"""The index at scale: builds write what changed (segments, the trained vector index kept), filtered
search fills k on a rare label, and readers in other processes keep answering during a build."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from storyreel.index import open_index
from storyreel.index.build import write_videos
from storyreel.index.reader import vector_ids
from storyreel.index.vectors import plan_update
from storyreel.testing.synthetic import clustered_vectors
from storyreel.testing.synthetic_records import synthetic_video_records

DIM = 16


def files_of(index_dir) -> dict[str, int]:
    """{file name: inode} of the published generation."""
    folder = index_dir / (index_dir / "CURRENT").read_text().strip()
    return {p.name: p.stat().st_ino for p in folder.iterdir()}


def test_vector_index_update_rule():
    # no index yet / a new kind of index / outgrown (or shrunk) its training by 4x: retrain
    assert plan_update("", 0, 0, 500, 500, 0, 512)[0] == "build"
    assert plan_update("Flat", 900, 900, 1_200, 300, 0, 512) == (
        "retrain", "retrained: 1,200 clips need HNSW32 instead of Flat")
    assert plan_update("IVF256,Flat", 12_000, 12_000, 48_001, 36_001, 0, 512)[0] == "retrain"
    assert plan_update("IVF256,Flat", 12_000, 12_000, 2_999, 0, 9_001, 512)[0] == "retrain"
    # small changes are added to the trained index; large ones fold into its file; HNSW cannot remove
    assert plan_update("IVF256,Flat", 12_000, 12_000, 12_100, 100, 0, 512)[0] == "add"
    assert plan_update("IVF256,Flat", 12_000, 12_000, 15_001, 3_001, 0, 512)[0] == "compact"
    assert plan_update("HNSW32", 5_000, 5_000, 4_999, 0, 1, 512)[0] == "compact"
    assert plan_update("HNSW32", 5_000, 5_000, 5_000, 0, 0, 512)[0] == "keep"
    # one video past 1M clips does not retrain into compressed codes while the full vectors fit memory
    assert plan_update("IVF4096,Flat", 1_000_000, 1_000_000, 1_000_100, 100, 0, 512)[0] == "add"
    assert plan_update("IVF4096,Flat", 1_000_000, 1_000_000, 4_000_001, 3_000_001, 0, 512) == (
        "retrain", "retrained as OPQ64_256,IVF16384_HNSW32,PQ64: 4,000,001 clips is outside 4x the 1,000,000 "
        "the index was trained for")


def test_builds_write_only_what_changed_and_read_like_a_clean_build(tmp_path):
    vectors = clustered_vectors(12_100, DIM, centres=300, seed=1)
    base, extra = vectors[:12_000], vectors[12_000:]
    write = lambda index_dir, records, **kw: write_videos(index_dir, records, model_id="m", dim=DIM, **kw)  # noqa: E731
    first = write(tmp_path / "idx", synthetic_video_records(base, 1_000))
    assert first.index_type == "IVF256,Flat" and first.index_update == "built IVF256,Flat over 12,000 clips"
    before = files_of(tmp_path / "idx")
    assert sorted(before) == ["catalog.duckdb", "frames-000001.f16", "vectors.faiss"]
    # 8 float16 frame vectors per clip, nothing else per clip outside the catalog and FAISS
    assert os.path.getsize(tmp_path / "idx" / first.generation / "frames-000001.f16") == 12_000 * 8 * DIM * 2

    added = write(tmp_path / "idx", synthetic_video_records(extra, 100, first_video=12))
    assert added.index_update.startswith("added 100 vectors to the trained IVF256,Flat index and removed 0 ids")
    after = files_of(tmp_path / "idx")
    # the trained index and the first segment are the same files (hard links), not rewritten
    assert {name: after[name] for name in before if name != "catalog.duckdb"} == \
        {name: ino for name, ino in before.items() if name != "catalog.duckdb"}
    assert sorted(after) == ["catalog.duckdb", "frames-000001.f16", "frames-000002.f16", "vectors.faiss"]

    removed = write(tmp_path / "idx", [], removed=["/synthetic/video_0000003.mp4"])
    assert removed.index_update.startswith("added 100 vectors to the trained IVF256,Flat index and removed 1,000 ids")
    assert files_of(tmp_path / "idx")["vectors.faiss"] == before["vectors.faiss"]

    # A clean build of the final corpus: same rows, same frame vectors, same ids in the vector index.
    final = [r for r in synthetic_video_records(base, 1_000) if not r.file.path.endswith("0000003.mp4")]
    clean = write(tmp_path / "clean", [*final, *synthetic_video_records(extra, 100, first_video=12)])
    with open_index(tmp_path / "idx") as inc, open_index(tmp_path / "clean") as ref:
        assert inc.verify() == [] and ref.verify() == []
        unnumbered = lambda idx: [r.to_dict() | {"clip_id": 0} for r in idx.clips()]  # noqa: E731
        assert unnumbered(inc) == unnumbered(ref)
        inc_ids, ref_ids = sorted(inc.clip_ids()), sorted(ref.clip_ids())
        assert len(inc_ids) == len(ref_ids) == 11_100 == clean.clips
        inc_frames, ref_frames = inc.frame_vectors(inc_ids), ref.frame_vectors(ref_ids)
        for a, b in zip(inc_ids[::97], ref_ids[::97]):
            np.testing.assert_array_equal(inc_frames[a], ref_frames[b])
        assert sorted(vector_ids(inc.vector_index).tolist()) == inc_ids
        # search answers from the up-to-date index: a new clip finds itself
        new_id = max(inc_ids)
        ids, scores = inc.search_vectors(inc_frames[new_id][0], 1)
        assert ids.tolist() == [new_id] and scores[0] == pytest.approx(1.0, abs=1e-3)


def test_cli_motion_filter_returns_k_for_a_1_percent_label(tmp_path, run_cli):
    """12,000 clips on an IVF index with the tiny CLIP's model id; 120 (1%) are zoom-in, all far from the
    query text, so the probed lists hold none of them; `search --motion zoom-in -k 10` still gives 10."""
    from storyreel.index.embed import load_clip
    from storyreel.retrieval import search

    embedder = load_clip("tiny")
    query = embedder.embed_text(["a scene"])[0]
    vectors = clustered_vectors(12_000, embedder.dim, centres=300, noise=0.5, seed=3)
    rare = set(np.argsort(vectors @ query)[:120].tolist())
    motions = ["zoom-in" if i in rare else "static" for i in range(len(vectors))]
    write_videos(tmp_path / "idx", synthetic_video_records(vectors, 1_000, motions=motions),
                 model_id=embedder.model_id, dim=embedder.dim)
    with open_index(tmp_path / "idx") as idx:
        assert idx.index_type.startswith("IVF")
        unfiltered, _ = idx.search_vectors(query, 100)
        assert not rare & set(unfiltered.tolist())  # a post-filter of these candidates would find nothing
        hits = search(idx, text="a scene", k=10, motion="zoom-in", embedder=embedder)
    assert len(hits) == 10 and {h.clip.clip_id for h in hits} <= rare
    proc = run_cli("search", "a scene", "--index", tmp_path / "idx", "--motion", "zoom-in", "-k", "10",
                   "--models", "tiny", "--json", check=True)
    rows = json.loads(proc.stdout)
    assert len(rows) == 10 and all(r["motion"] == "zoom-in" for r in rows)
    assert [r["clip_id"] for r in rows] == [h.clip.clip_id for h in hits]


def test_long_video_decodes_in_flat_memory(tmp_path, monkeypatch):
    """The mapper holds a bounded number of decoded frames whatever the video's length: a long
    video (5 minutes: 2.5x CHUNK_CLIPS clips) peaks at the same live decoded bytes as a 1-minute one
    (pass 1 streams small frames through the cut detector, pass 2 decodes CHUNK_CLIPS clips at a time).
    The 2-hour run with peak RSS is scripts/bench_long_video.py (too slow for the suite). Low fps and
    small frames keep this cheap."""
    import sys
    import weakref

    from storyreel.index.build import CHUNK_CLIPS, BuildSettings, map_video
    from storyreel.index.embed import load_clip
    from storyreel.index.scan import FileStat
    from storyreel.testing.synthetic import write_long_video

    build_module = sys.modules["storyreel.index.build"]  # (the package exports its `build` function by that name)
    live = {"bytes": 0, "peak": 0}

    def release(nbytes):
        live["bytes"] -= nbytes

    real_iter_frames = build_module.iter_frames

    def counting_iter_frames(*args, **kwargs):  # every decoded batch counts until it is freed
        for idx, batch in real_iter_frames(*args, **kwargs):
            live["bytes"] += batch.nbytes
            live["peak"] = max(live["peak"], live["bytes"])
            weakref.finalize(batch, release, batch.nbytes)
            yield idx, batch

    monkeypatch.setattr(build_module, "iter_frames", counting_iter_frames)
    settings = BuildSettings(frames_per_clip=2, analysis_short_side=32, motion_frames=3)
    embedder = load_clip("tiny")
    peaks, progress = {}, []

    class FramesProgress:  # what storyreel.core.progress.Progress receives from the mapper
        def update(self, **fields):
            progress.append((fields["frames"], fields["of"]))

    for minutes in (1, 5):
        path = tmp_path / f"long{minutes}.mp4"
        frames = write_long_video(path, minutes * 60, fps=2.0, size=(64, 48))
        live["peak"] = 0
        record = map_video(FileStat(str(path), path.stat().st_size, path.stat().st_mtime_ns), settings, embedder,
                           progress=FramesProgress())
        assert record.error is None and len(record.clips) >= minutes * 6  # a cut every 10 s, clips up to 8 s
        assert progress[-1] == (frames, frames)
        peaks[minutes] = live["peak"]
    assert len(record.clips) > 2 * CHUNK_CLIPS
    assert peaks[5] <= 1.1 * peaks[1], peaks
