"""The index at scale: builds write what changed (segments, the trained vector index kept), filtered
search fills k on a rare label, and readers in other processes keep answering during a build."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from storyreel.index import open_index
from storyreel.index.reader import vector_ids
from storyreel.index.vectors import plan_update
from storyreel.index.writer import write_videos
from storyreel.synthetic import clustered_vectors
from storyreel.testing.synthetic_records import synthetic_video_records

DIM = 16
SCAN = "PQ16x4fs_64,RFlat"  # the index choose_index_spec picks for these clips (index/vectors.py)


def files_of(index_dir) -> dict[str, int]:
    """{file name: inode} of the published generation."""
    folder = index_dir / (index_dir / "CURRENT").read_text().strip()
    return {p.name: p.stat().st_ino for p in folder.iterdir()}


def test_vector_index_update_rule():
    scan = "PQ64x4fs_64,RFlat"
    # no index yet / a new kind of index: build it
    assert plan_update("", 0, 0, 500, 500, 0, 512)[0] == "build"
    assert plan_update("Flat", 900, 900, 1_200, 300, 0, 512) == (
        "retrain", f"retrained: 1,200 clips need {scan} instead of Flat")
    for older in ("HNSW32", "IVF256,Flat"):  # built by an earlier version
        assert plan_update(older, 12_000, 12_000, 12_100, 100, 0, 512) == (
            "retrain", f"retrained: 12,100 clips need {scan} instead of {older}")
    # a scan index takes new vectors and skips removed ids; 25% new ones fold into its file; it is
    # rebuilt once 25% of its vectors are removed ones
    assert plan_update(scan, 12_000, 12_000, 12_070, 100, 30, 512) == (
        "add", f"added 100 vectors to the {scan} index and skips 30 removed ids (base 12,000)")
    assert plan_update(scan, 12_000, 12_000, 15_001, 3_001, 0, 512)[0] == "compact"
    assert plan_update(scan, 12_000, 12_000, 15_000, 3_000, 2_000, 512)[0] == "add"
    assert plan_update(scan, 12_000, 12_000, 8_999, 0, 3_001, 512) == (
        "retrain", f"rebuilt the {scan} index: 3,001 of its 12,000 vectors were removed")
    assert plan_update(scan, 5_000, 5_000, 5_000, 0, 0, 512)[0] == "keep"
    # one video past 1M clips does not rebuild into compressed codes while the full vectors fit memory
    assert plan_update(scan, 1_000_000, 1_000_000, 1_000_100, 100, 0, 512)[0] == "add"
    assert plan_update(scan, 1_000_000, 1_000_000, 4_194_305, 3_194_305, 0, 512) == (
        "retrain", f"retrained: 4,194,305 clips need OPQ64_256,IVF16384_HNSW32,PQ64 instead of {scan}")
    # trained (IVF) indexes: small changes are added, large ones fold into the file, 4x growth retrains
    pq = "OPQ64_256,IVF16384_HNSW32,PQ64"
    assert plan_update(pq, 5_000_000, 5_000_000, 4_999_100, 100, 1_000, 512) == (
        "add", f"added 100 vectors to the {pq} index and drops 1,000 removed ids (base 5,000,000; trained for "
        "5,000,000 clips)")
    assert plan_update(pq, 5_000_000, 5_000_000, 6_250_001, 1_250_001, 0, 512)[0] == "compact"
    assert plan_update(pq, 5_000_000, 5_000_000, 20_000_001, 15_000_001, 0, 512) == (
        "retrain", f"retrained as {pq}: 20,000,001 clips is outside 4x the 5,000,000 the index was trained for")


def test_builds_write_only_what_changed_and_read_like_a_clean_build(tmp_path):
    vectors = clustered_vectors(12_100, DIM, centres=300, seed=1)
    base, extra = vectors[:12_000], vectors[12_000:]
    write = lambda index_dir, records, **kw: write_videos(index_dir, records, model_id="m", dim=DIM, **kw)  # noqa: E731
    first = write(tmp_path / "idx", synthetic_video_records(base, 1_000))
    assert first.index_type == SCAN and first.index_update == f"built {SCAN} over 12,000 clips"
    before = files_of(tmp_path / "idx")
    assert sorted(before) == ["catalog.duckdb", "frames-000001.f16", "vectors.faiss"]
    # 8 float16 frame vectors per clip, nothing else per clip outside the catalog and FAISS
    assert os.path.getsize(tmp_path / "idx" / first.generation / "frames-000001.f16") == 12_000 * 8 * DIM * 2

    added = write(tmp_path / "idx", synthetic_video_records(extra, 100, first_video=12))
    assert added.index_update == f"added 100 vectors to the {SCAN} index and skips 0 removed ids (base 12,000)"
    after = files_of(tmp_path / "idx")
    # the vector index and the first segment are the same files (hard links), not rewritten
    assert {name: after[name] for name in before if name != "catalog.duckdb"} == \
        {name: ino for name, ino in before.items() if name != "catalog.duckdb"}
    assert sorted(after) == ["catalog.duckdb", "frames-000001.f16", "frames-000002.f16", "vectors.faiss"]

    removed = write(tmp_path / "idx", [], removed=["/synthetic/video_0000003.mp4"])
    assert removed.index_update == f"added 100 vectors to the {SCAN} index and skips 1,000 removed ids (base 12,000)"
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
        # the index keeps the removed video's 1,000 ids as tombstones, which no search returns
        # and scores the 100 clips newer than its file beside it
        live = set(vector_ids(inc.vector_index).tolist()) - set(inc.tombstones.tolist())
        assert sorted(live | set(inc.added[0].tolist())) == inc_ids and len(inc.added[0]) == 100
        assert len(inc.tombstones) == 1_000 and inc.stats()["vectors"] == 11_100
        gone = base[3_000:3_010]  # clips of the removed video
        assert not set(np.concatenate([inc.search_vectors(v, 20)[0] for v in gone]).tolist()) - set(inc_ids)
        # search answers from the up-to-date index: a new clip finds itself
        new_id = max(inc_ids)
        ids, scores = inc.search_vectors(inc_frames[new_id][0], 1)
        assert ids.tolist() == [new_id] and scores[0] == pytest.approx(1.0, abs=1e-3)


def test_scan_index_folds_in_new_vectors_and_is_rebuilt_after_many_removals(tmp_path):
    """New vectors past a quarter of the scan index (or SCAN_ADDED_MAX) go into its file (removed ids
    stay tombstones); once a quarter of it is removed clips it is rebuilt without them. Every step
    searches like a clean build of the same corpus (same clips, same scores)."""
    vectors = clustered_vectors(5_100, DIM, centres=100, seed=2)
    write = lambda index_dir, records, **kw: write_videos(index_dir, records, model_id="m", dim=DIM, **kw)  # noqa: E731
    videos = list(synthetic_video_records(vectors[:4_000], 400))
    write(tmp_path / "idx", videos)
    gone = write(tmp_path / "idx", [], removed=[videos[0].file.path])
    assert gone.index_update == f"added 0 vectors to the {SCAN} index and skips 400 removed ids (base 4,000)"
    before = files_of(tmp_path / "idx")["vectors.faiss"]
    extra = list(synthetic_video_records(vectors[4_000:], 550, first_video=10))
    folded = write(tmp_path / "idx", extra)
    assert folded.index_update == (f"compacted the {SCAN} index: +1,100 vectors into its 4,000 (same training; "
                                   "400 removed ids stay skipped)")
    assert files_of(tmp_path / "idx")["vectors.faiss"] != before
    with open_index(tmp_path / "idx") as idx:
        assert idx.vector_index.ntotal == 5_100 and len(idx.tombstones) == 400 and idx.verify() == []
        live = sorted(idx.clip_ids())
        assert len(live) == 4_700 and not set(idx.tombstones.tolist()) & set(live)
        found = np.concatenate([idx.search_vectors(v, 10)[0] for v in vectors[:400:20]])
        assert set(found.tolist()) <= set(live)
    # an export is rebuilt without the tombstones: its FAISS file answers with live clips only
    import faiss

    from storyreel.index.export import export_parquet

    export_parquet(tmp_path / "idx", tmp_path / "export")
    exported = faiss.read_index(str(tmp_path / "export" / "image.index"))
    assert sorted(vector_ids(exported).tolist()) == live
    rebuilt = write(tmp_path / "idx", [], removed=[v.file.path for v in videos[1:4]])
    assert rebuilt.index_update == f"rebuilt the {SCAN} index: 1,600 of its 5,100 vectors were removed"
    kept = [*videos[4:], *extra]
    clean = write(tmp_path / "clean", kept)
    with open_index(tmp_path / "idx") as idx, open_index(tmp_path / "clean") as ref:
        assert len(idx.tombstones) == 0 and idx.vector_index.ntotal == 3_500 == clean.clips
        assert idx.verify() == [] and ref.verify() == []
        for v in vectors[1_500:5_100:290]:
            (ids, scores), (ref_ids, ref_scores) = idx.search_vectors(v, 5), ref.search_vectors(v, 5)
            rows, ref_rows = idx.clips_by_id(ids), ref.clips_by_id(ref_ids)
            assert [(rows[i].video, rows[i].start_frame) for i in ids.tolist()] == \
                [(ref_rows[i].video, ref_rows[i].start_frame) for i in ref_ids.tolist()]
            np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)


def test_cli_motion_filter_returns_k_for_a_1_percent_label(tmp_path, run_cli):
    """12,000 clips with the tiny CLIP's model id; 120 (1%) are zoom-in, all far from the query text, so
    the unfiltered search's top 100 hold none of them; `search --motion zoom-in -k 10` still gives 10."""
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
        assert idx.index_type == "PQ16x4fs_64,RFlat"
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
    import weakref

    from storyreel.index import BuildSettings, mapper
    from storyreel.index.embed import load_clip
    from storyreel.index.mapper import CHUNK_CLIPS, map_video
    from storyreel.index.scan import FileStat
    from storyreel.synthetic import write_long_video

    live = {"bytes": 0, "peak": 0}

    def release(nbytes):
        live["bytes"] -= nbytes

    real_iter_frames = mapper.iter_frames

    def counting_iter_frames(*args, **kwargs):  # every decoded batch counts until it is freed
        for idx, batch in real_iter_frames(*args, **kwargs):
            live["bytes"] += batch.nbytes
            live["peak"] = max(live["peak"], live["bytes"])
            weakref.finalize(batch, release, batch.nbytes)
            yield idx, batch

    monkeypatch.setattr(mapper, "iter_frames", counting_iter_frames)
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
