"""Vector search benchmark: the index `choose_index_spec` picks for N clip vectors, on this machine.

Vectors are drawn like real embeddings: a mixture of Gaussian centres plus noise, L2-normalized
(uniform random high-dimensional vectors have no near neighbours worth finding). Held-out vectors
of the same mixture are the queries. Reports build time (train + add + parameter tuning), memory,
single-query latency (p50/p99, in a fresh process that reads the index file, as `storyreel search`
does) and recall@10 against exact search. Target at N=1M, d=512:
p50 ≤ 5 ms with recall@10 ≥ 0.95.

`--queries text-like` adds out-of-distribution queries shaped like CLIP text embeddings
(synthetic/corpus.py `text_like_queries`: cosine ~0.3 to one centre plus a strong
offset shared by all queries), tunes the index with a separate set of them (as the index build
does with its caption list; the build then searches without their learned offset when that helps,
index/vectors.py `QueryOffset`, and the JSON's "query_offset" says whether it does), and reports
in- and out-of-distribution rows side by side. Searches go through index/vectors.py `search`, as
`storyreel search` does. `--spec` tries another FAISS index. Target
at 1M x 512 with 50,000 centres: p50 ≤ 2 ms and recall@10 ≥ 0.95 for both, build ≤ 15 min.

    python scripts/bench_search.py            # N = 1,000,000 (several minutes, ~6 GB RAM)
    python scripts/bench_search.py --n 50000  # quick run
    python scripts/bench_search.py --n 1000000 --centres 50000 --queries text-like
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from storyreel.index.vectors import build_vector_index, choose_index_spec, encode_offset, search, search_params
from storyreel.synthetic import clustered_vectors, text_like_queries
from storyreel.testing.probes import peak_rss_kib


def search_child(folder: str, k: int) -> int:
    """In a fresh process, as `storyreel search` does: read the index file and the query offset, search
    every query of every set with one thread, print one JSON line (latencies, ids, peak RSS)."""
    import faiss

    from storyreel.index.vectors import decode_offset

    faiss.omp_set_num_threads(1)
    folder = Path(folder)
    index = faiss.read_index(str(folder / "bench.faiss"))
    offset = decode_offset((folder / "offset.json").read_text(), index, np.zeros(0, np.int64))
    out = {}
    for path in sorted(folder.glob("queries-*.npy")):
        latencies, found = [], []
        for q in np.load(path):
            start = time.perf_counter()
            _, result = search(index, q[None], k, offset=offset)
            latencies.append((time.perf_counter() - start) * 1000)
            found.append(result[0].tolist())
        out[path.stem.removeprefix("queries-")] = {"latencies": latencies, "found": found}
    print(json.dumps({"sets": out, "peak_rss_mb": round(peak_rss_kib() / 1024, 1)}))
    return 0


def offset_use(index, offset) -> str:
    """How searches treat the text queries' learned offset (index/vectors.py): dropped from the query
    on a graph, dropped from the centroids of an IVF index, or not at all."""
    import faiss

    if offset is not None:
        return f"projected from queries, {len(offset.hub_ids)} hubs"

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return "not used"
    centroids = ivf.quantizer.reconstruct_n(0, min(ivf.nlist, 64))
    # projected centroids lose their unit length (k-means for inner product keeps them unit)
    return "projected from centroids" if np.abs(np.linalg.norm(centroids, axis=1) - 1).max() > 1e-3 else "not used"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--search-child":
        return search_child(sys.argv[2], int(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database vectors")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--centres", type=int, default=4000, help="Gaussian centres of the mixture")
    parser.add_argument("--noise", type=float, default=1.0, help="spread around a centre, relative to its length")
    parser.add_argument("--queries-n", type=int, default=1000, help="queries per query set")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--spec", help="FAISS factory string instead of choose_index_spec's, e.g. IVF16384_HNSW32,Flat")
    parser.add_argument("--queries", choices=("in", "text-like"), default="in",
                        help="in: held-out database-like queries; text-like: also out-of-distribution ones")
    args = parser.parse_args()

    import faiss

    t0 = time.perf_counter()
    data = clustered_vectors(args.n + args.queries_n, args.dim, centres=args.centres, noise=args.noise, seed=0)
    base, queries = data[:args.n], data[args.n:].copy()
    del data
    ids = np.arange(args.n, dtype=np.int64)
    generate_s = time.perf_counter() - t0
    print(f"generated {args.n:,} x {args.dim} vectors in {generate_s:.1f}s", file=sys.stderr)

    spec = args.spec or choose_index_spec(args.n, args.dim)
    text_like = args.queries == "text-like"
    tuning = text_like_queries(256, args.dim, args.centres, seed=0, query_seed=1) if text_like else None
    t0 = time.perf_counter()
    index, offset = build_vector_index(ids, base, spec=spec, tune_queries=tuning)
    build_s = time.perf_counter() - t0
    print(f"built {spec} in {build_s:.1f}s ({search_params(index) or 'exact'})", file=sys.stderr)

    query_sets = {"in": queries}
    if text_like:
        query_sets["text-like"] = text_like_queries(args.queries_n, args.dim, args.centres, seed=0, query_seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        faiss.write_index(index, str(Path(tmp) / "bench.faiss"))
        size_mb = (Path(tmp) / "bench.faiss").stat().st_size / 2**20
        (Path(tmp) / "offset.json").write_text(encode_offset(offset))
        for name, qs in query_sets.items():
            np.save(Path(tmp) / f"queries-{name}.npy", qs)
        build_rss_mb = peak_rss_kib() / 1024
        params, use = search_params(index), offset_use(index, offset)
        del index
        # A fresh process times the searches, as a `storyreel search` would run them: one query at a
        # time on one thread (FAISS parallelizes over queries, so one query gains nothing from more).
        proc = subprocess.run([sys.executable, __file__, "--search-child", tmp, str(args.k)],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"search process failed:\n{proc.stderr}")
    child = json.loads(proc.stdout.splitlines()[-1])
    rows = []
    for name, qs in query_sets.items():
        _, exact = faiss.knn(qs, base, args.k, metric=faiss.METRIC_INNER_PRODUCT)
        got = child["sets"][name]
        recall = float(np.mean([len(set(e) & set(f)) / args.k for e, f in zip(exact.tolist(), got["found"])]))
        p50, p99 = np.percentile(got["latencies"], [50, 99])
        rows.append({"queries": name, "p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3),
                     f"recall@{args.k}": round(recall, 4)})
    result = {
        "bench": "search", "n": args.n, "dim": args.dim, "centres": args.centres, "noise": args.noise,
        "index": spec, "query_offset": use, "params": params,
        "tuned_on": "database+text-like" if text_like else "database",
        "build_s": round(build_s, 1), "index_mb": round(size_mb, 1), "build_peak_rss_mb": round(build_rss_mb, 1),
        "search_peak_rss_mb": child["peak_rss_mb"], "query_threads": 1, "queries_per_set": len(queries),
        "results": rows,
    }
    p50_bound, build_bound = (2.0, 900) if text_like else (5.0, float("inf"))
    result["target_met"] = bool(args.n < 1_000_000 or (build_s <= build_bound and all(
        r["p50_ms"] <= p50_bound and r[f"recall@{args.k}"] >= 0.95 for r in rows)))
    print(f"{'index':<20}{'params':<14}{'queries':<11}{'build s':>9}{'index MB':>10}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'recall@' + str(args.k):>11}{'search RSS MB':>15}")
    for r in rows:
        print(f"{spec:<20}{params:<14}{r['queries']:<11}{build_s:>9.1f}{size_mb:>10.0f}{r['p50_ms']:>8.2f}"
              f"{r['p99_ms']:>8.2f}{r[f'recall@{args.k}']:>11.3f}{result['search_peak_rss_mb']:>15.0f}")
    print(json.dumps(result))
    return 0

if __name__ == "__main__":
    sys.exit(main())
