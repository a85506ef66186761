"""Vector search benchmark: the index `choose_index_spec` picks for N clip vectors, on this machine.

Vectors are drawn like real embeddings: a mixture of Gaussian centres plus noise, L2-normalized
(uniform random high-dimensional vectors have no near neighbours worth finding). Held-out vectors
of the same mixture are the queries. Reports build time (train + add + parameter tuning), memory,
single-query latency (p50/p99) and recall@10 against exact search. Target at N=1M, d=512:
p50 ≤ 5 ms with recall@10 ≥ 0.95.

`--queries text-like` adds out-of-distribution queries shaped like CLIP text embeddings
(storyreel/testing/synthetic.py `text_like_queries`: cosine ~0.3 to one centre plus a strong
offset shared by all queries), tunes the index with a separate set of them (as the index build
does with its caption list; the build then routes without their learned offset when that helps,
index/vectors.py `route_without_offset`, and the JSON's "routing" says whether it did), and reports
in- and out-of-distribution rows side by side. `--spec` tries another FAISS index. Target
at 1M x 512 with 50,000 centres: p50 ≤ 2 ms and recall@10 ≥ 0.95 for both, build ≤ 15 min.

    python scripts/bench_search.py            # N = 1,000,000 (several minutes, ~6 GB RAM)
    python scripts/bench_search.py --n 50000  # quick run
    python scripts/bench_search.py --n 1000000 --centres 50000 --queries text-like
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from storyreel.index.vectors import build_vector_index, choose_index_spec, search_params
from storyreel.testing.synthetic import clustered_vectors, text_like_queries


def index_mb(index) -> float:
    """Size of the index as FAISS writes it (its vectors, codes, lists and graph), in MiB."""
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size / 2**20


def routing(index) -> str:
    """'offset projected' when the build made the IVF routing ignore the text queries' offset (index/vectors.py)."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return "-"
    centroids = ivf.quantizer.reconstruct_n(0, min(ivf.nlist, 64))
    # projected centroids lose their unit length (k-means for inner product keeps them unit)
    return "offset projected" if np.abs(np.linalg.norm(centroids, axis=1) - 1).max() > 1e-3 else "as trained"


def main() -> int:
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
    index = build_vector_index(ids, base, spec=spec, tune_queries=tuning)
    build_s = time.perf_counter() - t0
    size_mb = index_mb(index)
    print(f"built {spec} in {build_s:.1f}s ({search_params(index) or 'exact'})", file=sys.stderr)

    query_sets = {"in": queries}
    if text_like:
        query_sets["text-like"] = text_like_queries(args.queries_n, args.dim, args.centres, seed=0, query_seed=2)
    # One query at a time is what a search does. FAISS parallelizes over queries, so one query
    # gains nothing from more threads, and idle OpenMP threads spinning on a shared machine cost ms.
    rows = []
    for name, qs in query_sets.items():
        faiss.omp_set_num_threads(max(1, faiss.omp_get_max_threads()))
        _, exact = faiss.knn(qs, base, args.k, metric=faiss.METRIC_INNER_PRODUCT)
        faiss.omp_set_num_threads(1)
        latencies, found = [], []
        for q in qs:
            start = time.perf_counter()
            _, result = index.search(q[None], args.k)
            latencies.append((time.perf_counter() - start) * 1000)
            found.append(result[0])
        recall = float(np.mean([len(set(e) & set(f)) / args.k for e, f in zip(exact, found)]))
        p50, p99 = np.percentile(latencies, [50, 99])
        rows.append({"queries": name, "p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3),
                     f"recall@{args.k}": round(recall, 4)})
    result = {
        "bench": "search", "n": args.n, "dim": args.dim, "centres": args.centres, "noise": args.noise,
        "index": spec, "routing": routing(index), "params": search_params(index),
        "tuned_on": "database+text-like" if text_like else "database",
        "build_s": round(build_s, 1), "index_mb": round(size_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "query_threads": 1, "queries_per_set": len(queries), "results": rows,
    }
    p50_bound, build_bound = (2.0, 900) if text_like else (5.0, float("inf"))
    result["target_met"] = bool(args.n < 1_000_000 or (build_s <= build_bound and all(
        r["p50_ms"] <= p50_bound and r[f"recall@{args.k}"] >= 0.95 for r in rows)))
    print(f"{'index':<16}{'params':<14}{'queries':<11}{'build s':>9}{'index MB':>10}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'recall@' + str(args.k):>11}{'peak RSS MB':>13}")
    for r in rows:
        print(f"{spec:<16}{result['params']:<14}{r['queries']:<11}{build_s:>9.1f}{size_mb:>10.0f}{r['p50_ms']:>8.2f}"
              f"{r['p99_ms']:>8.2f}{r[f'recall@{args.k}']:>11.3f}{result['peak_rss_mb']:>13.0f}")
    print(json.dumps(result))
    return 0

if __name__ == "__main__":
    sys.exit(main())
