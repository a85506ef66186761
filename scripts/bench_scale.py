"""Index cost at scale: synthetic catalogs of N clips written through the real writer (no decoding).

    python scripts/bench_scale.py --n 10000 100000 1000000   # the measured sizes (1M: ~20 min, 9 GB disk)
    python scripts/bench_scale.py --n 10000 100000           # quick

Per N (clips of 100 per video, clustered 512-d vectors, 8 float16 frame vectors per clip):
- build_s: writing the N clips and publishing (first build: trains the vector index);
- add_s / remove_s: adding one more video (100 clips), resp. removing one, and publishing
  (median of 3; the acceptance bound is <= 5 s at 1M and <= 2x the 10k time);
- bytes_per_clip: the published generation's files / clips (bound: <= 12 KB);
- search in a fresh process (one query thread): peak RSS, p50/p99 ms, recall@10 against exact search
  over the clips in the index.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from storyreel.index.writer import write_videos
from storyreel.synthetic import clustered_vectors
from storyreel.testing.probes import peak_rss_kib
from storyreel.testing.synthetic_records import synthetic_video_records

DIM = 512
PER_VIDEO = 100
QUERIES = 500


def search_child(index_dir: str, queries_path: str, k: int) -> int:
    """In a fresh process: open the index, search every query with one thread, print one JSON line."""
    import faiss

    from storyreel.index import open_index

    faiss.omp_set_num_threads(1)
    queries = np.load(queries_path)
    t = time.perf_counter()
    with open_index(index_dir) as idx:
        open_s = time.perf_counter() - t
        latencies, found = [], []
        for q in queries:
            start = time.perf_counter()
            ids, _ = idx.search_vectors(q, k)
            latencies.append((time.perf_counter() - start) * 1000)
            found.append(ids.tolist())
    p50, p99 = np.percentile(latencies, [50, 99])
    print(json.dumps({"open_s": round(open_s, 2), "p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3),
                      "peak_rss_mb": round(peak_rss_kib() / 1024, 1),
                      "found": found}))
    return 0


def timed(fn, *args, **kwargs) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def bench(n: int, root: Path, k: int = 10, keep: bool = False) -> dict:
    import faiss

    index_dir = root / f"index-{n}"
    vectors = clustered_vectors(n + 4 * PER_VIDEO + QUERIES, DIM, centres=max(100, min(50_000, n // 20)), seed=n)
    base, extra, queries = vectors[:n], vectors[n:n + 3 * PER_VIDEO], vectors[-QUERIES:]
    write = lambda records, **kw: write_videos(index_dir, records, model_id="bench", dim=DIM, **kw)  # noqa: E731
    if (index_dir / "CURRENT").exists():  # --dir with an index of these N clips kept from an earlier run
        build_s = float("nan")
    else:
        build_s = timed(write, synthetic_video_records(base, PER_VIDEO))
    videos = n // PER_VIDEO
    adds, removes = [], []
    for i in range(3):
        part = extra[i * PER_VIDEO:(i + 1) * PER_VIDEO]
        adds.append(timed(write, synthetic_video_records(part, PER_VIDEO, first_video=videos + i)))
        removes.append(timed(write, [], removed=[f"/synthetic/video_{i:07d}.mp4"]))
    report = write([], removed=[])  # how the index stands (nothing changes)
    generation = index_dir / (index_dir / "CURRENT").read_text().strip()
    disk = sum(p.stat().st_size for p in generation.iterdir())
    # What the index holds now: the base minus videos 0-2, plus the three added videos.
    kept = np.concatenate([base[3 * PER_VIDEO:], extra])
    kept_ids = np.concatenate([np.arange(3 * PER_VIDEO, n), np.arange(n, n + 3 * PER_VIDEO)]).astype(np.int64)
    stored = kept.astype(np.float16).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    _, exact = faiss.knn(queries, stored, k, metric=faiss.METRIC_INNER_PRODUCT)
    truth = kept_ids[exact]
    np.save(root / "queries.npy", queries)
    proc = subprocess.run([sys.executable, __file__, "--search-child", str(index_dir), str(root / "queries.npy")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"search process failed:\n{proc.stderr}")
    child = json.loads(proc.stdout.splitlines()[-1])
    recall = float(np.mean([len(set(t.tolist()) & set(f)) / k for t, f in zip(truth, child.pop("found"))]))
    if not keep:
        shutil.rmtree(index_dir)
    return {"n": n, "index": report.index_type, "build_s": round(build_s, 1),
            "add_s": round(float(np.median(adds)), 3), "remove_s": round(float(np.median(removes)), 3),
            "index_update": report.index_update, "bytes_per_clip": round(disk / report.clips), **child,
            f"recall@{k}": round(recall, 4)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--search-child":
        return search_child(sys.argv[2], sys.argv[3], 10)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dir", help="keep the indexes in this folder (INDEX: DIR/index-N) and reuse them "
                        "in later runs (default: a temporary folder; needs ~10 KB a clip)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir) if args.dir else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for n in sorted(args.n):
            results.append(bench(n, root, keep=bool(args.dir)))
            print(json.dumps(results[-1]), file=sys.stderr)
    first = results[0]
    print(f"{'clips':>9} {'index':<14} {'build s':>8} {'add s':>7} {'remove s':>9} {'B/clip':>7} {'RSS MB':>7} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'recall':>7}")
    for r in results:
        print(f"{r['n']:>9,} {r['index']:<14} {r['build_s']:>8.1f} {r['add_s']:>7.3f} {r['remove_s']:>9.3f} "
              f"{r['bytes_per_clip']:>7} {r['peak_rss_mb']:>7.0f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} "
              f"{r['recall@10']:>7.3f}")
    last = results[-1]
    met = (last["add_s"] <= 5 and last["remove_s"] <= 5 and last["add_s"] <= 2 * first["add_s"]
           and last["remove_s"] <= 2 * first["remove_s"] and all(r["bytes_per_clip"] <= 12 * 1024 for r in results))
    print(json.dumps({"bench": "scale", "dim": DIM, "clips_per_video": PER_VIDEO, "results": results,
                      "target_met": bool(met)}))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
