"""Vector search benchmark: the index `choose_index_spec` picks for N clip vectors, on this machine.

Vectors are drawn like real embeddings: a mixture of Gaussian centres plus noise, L2-normalized
(uniform random high-dimensional vectors have no near neighbours worth finding). Held-out vectors
of the same mixture are the queries. Reports build time (train + add + parameter tuning), memory,
single-query latency (p50/p99) and recall@10 against exact search. Target at N=1M, d=512:
p50 ≤ 5 ms with recall@10 ≥ 0.95.

    python scripts/bench_search.py            # N = 1,000,000 (several minutes, ~6 GB RAM)
    python scripts/bench_search.py --n 50000  # quick run
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
from storyreel.testing.synthetic import clustered_vectors


def index_mb(index) -> float:
    """Size of the index as FAISS writes it (its vectors, codes, lists and graph), in MiB."""
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database vectors")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--centres", type=int, default=4000, help="Gaussian centres of the mixture")
    parser.add_argument("--noise", type=float, default=1.0, help="spread around a centre, relative to its length")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    import faiss

    t0 = time.perf_counter()
    data = clustered_vectors(args.n + args.queries, args.dim, centres=args.centres, noise=args.noise, seed=0)
    base, queries = data[:args.n], data[args.n:].copy()
    del data
    ids = np.arange(args.n, dtype=np.int64)
    generate_s = time.perf_counter() - t0
    print(f"generated {args.n:,} x {args.dim} vectors in {generate_s:.1f}s", file=sys.stderr)

    spec = choose_index_spec(args.n, args.dim)
    t0 = time.perf_counter()
    index = build_vector_index(ids, base)
    build_s = time.perf_counter() - t0
    size_mb = index_mb(index)
    print(f"built {spec} in {build_s:.1f}s ({search_params(index) or 'exact'})", file=sys.stderr)

    _, exact = faiss.knn(queries, base, args.k, metric=faiss.METRIC_INNER_PRODUCT)
    # One query at a time is what a search does. FAISS parallelizes over queries, so one query
    # gains nothing from more threads, and idle OpenMP threads spinning on a shared machine cost ms.
    faiss.omp_set_num_threads(1)
    latencies, found = [], []
    for q in queries:
        start = time.perf_counter()
        _, result = index.search(q[None], args.k)
        latencies.append((time.perf_counter() - start) * 1000)
        found.append(result[0])
    recall = float(np.mean([len(set(e) & set(f)) / args.k for e, f in zip(exact, found)]))
    p50, p99 = np.percentile(latencies, [50, 99])
    result = {
        "bench": "search", "n": args.n, "dim": args.dim, "centres": args.centres, "noise": args.noise,
        "index": spec, "params": search_params(index), "build_s": round(build_s, 1),
        "index_mb": round(size_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3), f"recall@{args.k}": round(recall, 4),
        "queries": args.queries, "query_threads": 1,
    }
    target_met = args.n < 1_000_000 or (p50 <= 5.0 and recall >= 0.95)
    result["target_met"] = bool(target_met)
    print(f"{'index':<16}{'params':<14}{'build s':>9}{'index MB':>10}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'recall@' + str(args.k):>11}")
    print(f"{spec:<16}{result['params']:<14}{build_s:>9.1f}{size_mb:>10.0f}{p50:>8.2f}{p99:>8.2f}{recall:>11.3f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
