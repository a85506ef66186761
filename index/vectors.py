"""FAISS vector index chosen by corpus size (autofaiss rules), with tuned search parameters.

| clips           | index (factory string)             | why                                              |
| --------------- | ---------------------------------- | ------------------------------------------------ |
| < 1k            | `Flat`                             | exact search is already instant                  |
| ≤ 1M (fits RAM) | `PQ{d/8}x4fs_64,RFlat`             | scan every clip's 4-bit code (FAISS fast-scan),  |
|                 |                                    | re-rank the best with the stored full vectors    |
| beyond          | `OPQ{m}_{4m},IVF{K}_HNSW32,PQ{m}`  | m-byte codes, K = 16k–64k (memory bound)         |

Why a scan up to 1M: a 1M-clip scan of 32-byte codes takes ~1.5 ms on one core, and it cannot miss
a small cluster. Graphs and inverted lists can: with 50,000 small clusters of unrelated content
(docs/benchmarks.md) nothing leads a greedy graph walk or a list centroid toward a query's cluster,
so HNSW32 reached recall@10 0.61 at efSearch 128 and IVF4096 needed every list.

All indexes use inner product on L2-normalized vectors (= cosine) and carry the caller's int64
ids (IVF indexes store ids natively, the others are wrapped in `IndexIDMap2`). A scan index cannot
drop ids: removed clips stay in it as tombstones that `search` skips until a rebuild
(`plan_update`). Indexes an earlier storyreel built (HNSW32, IVF{K},Flat) still load and search;
their next build with a change rebuilds them as the table says.

Search-time parameters (scan `k_factor`, IVF `nprobe`, HNSW `efSearch`) are tuned when the index is
built: sampled database vectors are used as queries, their exact neighbours (themselves excluded)
are the truth, and the cheapest setting that reaches TUNE_RECALL@10 is set on the index. Real
queries are CLIP *text* embeddings, which lie outside the image vectors' distribution (the
modality gap) and need more search effort for the same recall; so the build also embeds
TUNING_CAPTIONS with the index's text encoder and the setting must reach TUNE_RECALL on those
queries too. Those text queries also teach the search how they differ from the image vectors:
their shared offset from the database (`QueryOffset`). The build keeps it when searching with it
reaches the target at lower effort; it goes to the catalog's meta. (autofaiss also caps parameters
by a measured latency budget; we do not, so that the same vectors always give the same index,
whatever else the machine is doing. scripts/bench_search.py measures latency.) FAISS stores those
parameters in the index file; `search_params(index)` gives them as a string for the catalog, and
`set_search_params` applies such a string.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

FLAT_MAX = 1_000  # below: exact search
SCAN_MAX = 1_000_000  # up to: a scan of compressed codes with full vectors to re-rank (if they fit the budget)
FLAT_MEMORY_BUDGET = 8 * 2**30  # bytes of raw float32 vectors a full-vector index may hold
HNSW_NEIGHBOURS = 32
SCAN_ADDED_MAX = 4_096  # new clips readers score exactly beside a scan index (~0.2 ms a search) before it takes them
RERANK_CANDIDATES = 50  # candidates an offset-projected search scores exactly with the query as given
HUB_CANDIDATES = 256  # vectors furthest along the query offset, scored for every offset-projected search
TRAIN_POINTS_PER_CLUSTER = 64  # autofaiss trains on 30–256 points per cluster; FAISS warns below 39
SCAN_TRAIN_POINTS = 65_536  # PQ training sample of a scan index (16 centroids per sub-vector)
KMEANS_ITERATIONS = 10  # FAISS defaults to 25; 10 gives nearly the same centroids at 40% of the cost
TUNE_RECALL = 0.97  # recall@10 the tuned parameters must reach on the tuning queries
TUNE_QUERIES = 256


COMPACT_FRACTION = 0.25  # fold added/removed vectors into the base file once they reach this share of it
RETRAIN_GROWTH = 4  # retrain an IVF index when the corpus grows (or shrinks) by this factor


def clip_vectors(frames: np.ndarray) -> np.ndarray:
    """(n, K, dim) per-frame vectors → (n, dim) float32 clip vectors: the L2-normalized mean.

    The one definition, used by the builder, the reader and the tests' fake index alike."""
    frames = np.asarray(frames, dtype=np.float32)
    mean = frames.mean(axis=1)
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def index_family(spec: str) -> str:
    """The kind of index a factory string names: flat, scan (codes + full vectors), hnsw, ivf (full
    vectors in lists) or ivf-pq."""
    if spec == "Flat":
        return "flat"
    if spec.startswith("PQ") and spec.endswith(",RFlat"):
        return "scan"
    if spec.startswith("HNSW"):
        return "hnsw"
    return "ivf" if spec.endswith(",Flat") else "ivf-pq"


def plan_update(base_spec: str, base_count: int, trained_for: int, total: int, added: int, removed: int,
                dim: int) -> tuple[str, str]:
    """What a build does to the vector index: (action, reason for the build report).

    `added`: clips newer than the base file; `removed`: ids in the base file whose clips are gone.
    - "build"/"retrain": a new index from every clip vector, when there is none yet, when the corpus
      moved to another kind of index (choose_index_spec; full vectors become compressed codes only
      when they outgrow FLAT_MEMORY_BUDGET), when an IVF index holds RETRAIN_GROWTH x more (or
      fewer) vectors than it was trained on, or when COMPACT_FRACTION of a scan index's vectors are
      removed ones (it cannot drop ids; searches skip them meanwhile);
    - "compact": rewrite the base file as base + added - removed (same training), once the changes
      reach COMPACT_FRACTION of it; a scan index, whose readers score new clips beside it, once
      SCAN_ADDED_MAX are new (its removed ids stay tombstones);
    - "add": leave the base file; readers add the new vectors to it and drop (or skip) the removed
      ids when they open it (work proportional to the change);
    - "keep": nothing changed.
    """
    wanted = choose_index_spec(total, dim)
    if not base_spec:
        return "build", f"built {wanted} over {total:,} clips"
    family = index_family(base_spec)
    # Another kind of index: at once for the small kinds (cheap to build); from full vectors to
    # compressed codes only when the vectors outgrow their memory budget, so a corpus sitting at the
    # 1M boundary does not rebuild for one video.
    stay_full = family in ("scan", "ivf") and index_family(wanted) == "ivf-pq" and \
        total * dim * 4 <= FLAT_MEMORY_BUDGET
    if index_family(wanted) != family and not stay_full:
        return "retrain", f"retrained: {total:,} clips need {wanted} instead of {base_spec}"
    if "IVF" in base_spec and not trained_for / RETRAIN_GROWTH <= total <= RETRAIN_GROWTH * trained_for:
        return "retrain", (f"retrained as {wanted}: {total:,} clips is outside {RETRAIN_GROWTH}x the "
                           f"{trained_for:,} the index was trained for")
    if family == "scan" and removed > COMPACT_FRACTION * max(base_count, 1):
        return "retrain", f"rebuilt the {base_spec} index: {removed:,} of its {base_count:,} vectors were removed"
    if added == 0 and removed == 0:
        return "keep", f"kept the {base_spec} index ({total:,} clips)"
    if family == "scan" and added > min(SCAN_ADDED_MAX, COMPACT_FRACTION * max(base_count, 1)):
        return "compact", (f"compacted the {base_spec} index: +{added:,} vectors into its {base_count:,} "
                           f"(same training; {removed:,} removed ids stay skipped)")
    if family != "scan" and added + removed > COMPACT_FRACTION * max(base_count, 1):
        return "compact", (f"compacted the {base_spec} index: +{added:,} / -{removed:,} vectors "
                           f"into its {base_count:,} (same training)")
    training = f"; trained for {trained_for:,} clips" if "IVF" in base_spec else ""
    removal = "skips" if family == "scan" else "drops"
    return "add", (f"added {added:,} vectors to the {base_spec} index and {removal} {removed:,} removed ids "
                   f"(base {base_count:,}{training})")


def _power_of_two(x: float) -> int:
    return 2 ** max(0, round(math.log2(max(x, 1.0))))


def choose_index_spec(n: int, dim: int) -> str:
    """FAISS factory string for n vectors of dimension dim (autofaiss rules; module doc)."""
    if n < FLAT_MAX:
        return "Flat"
    if n <= SCAN_MAX and n * dim * 4 <= FLAT_MEMORY_BUDGET:
        # 4-bit codes of 8-d sub-vectors (512-d: 32 bytes), at least 16 of them for small dimensions;
        # blocks of 64 codes scan ~20% faster than FAISS's default 32 for one query (scripts/bench_search.py)
        sub_vectors = max(m for m in range(1, min(dim, max(16, dim // 8)) + 1) if dim % m == 0)
        return f"PQ{sub_vectors}x4fs_64,RFlat"
    clusters = min(max(_power_of_two(4 * math.sqrt(n)), 2**14), 2**16)
    code_bytes = min(64, dim // 4)  # PQ sub-quantizers (8 bits each) = bytes per vector
    return f"OPQ{code_bytes}_{4 * code_bytes},IVF{clusters}_HNSW{HNSW_NEIGHBOURS},PQ{code_bytes}"


TUNING_CAPTIONS = (  # caption-style text queries the build tunes search parameters with (see module doc)
    "a dog running on a beach", "a man walking down a city street at night", "two people talking in a kitchen",
    "a car driving along a mountain road", "waves crashing on rocks", "a child playing with a ball in a park",
    "a close-up of a woman smiling", "birds flying over a lake at sunset", "a crowd cheering in a stadium",
    "a cat sleeping on a sofa", "rain falling on a window", "a chef cooking in a restaurant kitchen",
    "an aerial view of a forest", "a train passing through the countryside", "snow falling in a quiet village",
    "a person riding a bicycle", "fireworks in the night sky", "a boat sailing on the sea",
    "a horse galloping across a field", "people dancing at a party", "a busy market with many people",
    "the camera pans across a desert", "a hand writing on paper", "a river flowing through a canyon",
    "a plane taking off from a runway", "a teddy bear sitting on a bed", "a group of friends laughing",
    "clouds moving over hills", "a robot walking in a lab", "a soldier marching", "a girl reading a book",
    "city lights seen from above", "a fish swimming in a coral reef", "an old man sitting on a bench",
    "a storm over the ocean", "a close-up of flowers in the wind", "a basketball game", "a dark forest at night",
    "a cartoon character jumping", "a spaceship flying through space", "a woman singing on a stage",
    "a bird on a branch", "trees swaying in the wind", "a person typing on a laptop", "a campfire at night",
    "a wedding ceremony outdoors", "a skier going down a slope", "a lion walking in the savanna",
)


def build_vector_index(ids: np.ndarray, vectors: np.ndarray, spec: str | None = None,
                       tune_queries: np.ndarray | None = None):
    """A FAISS inner-product index over L2-normalized float32 `vectors` whose ids are `ids` (int64),
    and the `QueryOffset` its searches use (None: queries are searched as given; `search`).

    `spec` overrides `choose_index_spec` (tests, benchmarks). Search parameters come tuned on
    database vectors and, when given, on `tune_queries` (text-like queries, module doc).
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    n, dim = vectors.shape
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    spec = spec or choose_index_spec(n, dim)
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if "IVF" not in spec:
        index = faiss.IndexIDMap2(index)
    if not index.is_trained:
        rng = np.random.default_rng(0)
        count = SCAN_TRAIN_POINTS
        if "IVF" in spec:
            ivf = faiss.extract_index_ivf(index)
            ivf.cp.niter = KMEANS_ITERATIONS
            count = TRAIN_POINTS_PER_CLUSTER * ivf.nlist
        index.train(vectors[np.sort(rng.choice(n, size=min(n, count), replace=False))])
    for start in range(0, n, 100_000):
        index.add_with_ids(vectors[start:start + 100_000], ids[start:start + 100_000])
    as_given, reached = tune_search_params(index, ids, vectors, queries=tune_queries)
    if tune_queries is None or not len(tune_queries) or not is_scan(index):
        return index, None
    offset = QueryOffset.learn(query_offset(tune_queries, vectors), (ids, vectors))
    projected, projected_reached = tune_search_params(index, ids, vectors, queries=tune_queries, offset=offset)
    if projected_reached and (not reached or _effort(projected) < _effort(as_given)):
        return index, offset
    set_search_params(index, as_given)
    return index, None


def _effort(params: str) -> float:
    """The search effort a parameter string sets ('k_factor=8' -> 8)."""
    return float(params.split(",")[0].split("=")[1]) if params else 0


def _inner(vector_index):
    """The index an `IndexIDMap2` wraps (or the index itself), as its own FAISS class."""
    import faiss

    return faiss.downcast_index(vector_index.index if hasattr(vector_index, "id_map") else vector_index)


def is_scan(vector_index) -> bool:
    """Whether the index is a scan of compressed codes with full vectors to re-rank (module doc). It
    cannot drop ids (removed ones stay as tombstones), readers score clips newer than its file beside
    it, and, as it scores every code anyway, tombstones and filters are applied to its results."""
    import faiss

    return isinstance(_inner(vector_index), faiss.IndexRefine)


@dataclass(frozen=True)
class QueryOffset:
    """Text queries' shared offset from the database vectors (module doc), for `search`.

    `direction`: unit vector from the database's mean to the tuning queries' mean. `hub_ids`,
    `hub_vectors`: the HUB_CANDIDATES stored vectors furthest along it. A text query's exact score
    is q·x = q'·x + (q·o)(x·o) with q' the query without its offset: the index search with q' finds
    the clips close to what the text describes, and the hubs are the clips that the shared part
    (q·o)(x·o) lifts for every text query (hubness of cross-modal search); both are scored exactly."""

    direction: np.ndarray
    hub_ids: np.ndarray
    hub_vectors: np.ndarray

    @classmethod
    def learn(cls, direction: np.ndarray, *parts: tuple[np.ndarray, np.ndarray]) -> QueryOffset:
        """The offset `direction` with its hubs among the vectors of `parts`: (ids, float32 (n, dim)) each."""
        hub_ids, hub_vectors = [], []
        for ids, vectors in parts:
            along = np.asarray(vectors @ direction)
            top = _top(along, HUB_CANDIDATES)
            hub_ids.append(np.asarray(ids, np.int64)[top])
            hub_vectors.append(np.asarray(vectors[top], dtype=np.float32))
        hub_ids, hub_vectors = np.concatenate(hub_ids), np.concatenate(hub_vectors)
        top = _top(hub_vectors @ direction, HUB_CANDIDATES)
        return cls(np.asarray(direction, np.float32), hub_ids[top], np.ascontiguousarray(hub_vectors[top]))

    def keeping(self, keep: np.ndarray) -> QueryOffset:
        """The same offset with only the hubs where `keep` (bool per hub) is true (filters, tombstones)."""
        return QueryOffset(self.direction, self.hub_ids[keep], self.hub_vectors[keep])


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n largest scores (unordered; all when there are fewer)."""
    return np.argpartition(-scores, n - 1)[:n] if len(scores) > n else np.arange(len(scores))


def search(vector_index, queries: np.ndarray, n: int, params=None, offset: QueryOffset | None = None,
           tombstones: np.ndarray | None = None, added: tuple[np.ndarray, np.ndarray] | None = None):
    """Top `n` by inner product for each row of `queries`: (scores, ids) as FAISS returns them (id -1
    pads rows with fewer results). `params`: FAISS SearchParameters (an id selector, nprobe).

    With `offset` the index is searched with each query's component along the offset removed, for
    max(n, RERANK_CANDIDATES) candidates; those and the offset's hubs are scored exactly with the
    query as given (the index's stored full vectors), ties broken by id. `tombstones` (sorted):
    removed ids the index still holds (`is_scan`). They are dropped from the results: the
    search asks for more in proportion to their share of the index, then 4x more, until the results
    hold k_factor x n live ids (as many live candidates as an index without them would re-rank) or
    n + len(tombstones) results, which always hold n live ids. `added`: (ids, vectors) of clips
    newer than the index file, scored exactly and merged in (`is_scan`: readers do not add
    them to a scan index, whose full vectors would be copied to grow)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    scores, ids = _skipping(vector_index, queries, n, params, offset, tombstones)
    if added is None or not len(added[0]):
        return scores, ids
    added_scores = queries @ added[1].T
    for row in range(len(queries)):
        top, found = _top(added_scores[row], n), ids[row] >= 0
        best_scores, best_ids = _best(np.concatenate([ids[row][found], added[0][top]]),  # hubs may be added clips
                                      np.concatenate([scores[row][found], added_scores[row, top]]), n)
        scores[row], ids[row] = -np.finfo(np.float32).max, -1
        scores[row, :len(best_ids)], ids[row, :len(best_ids)] = best_scores, best_ids
    return scores, ids


def _skipping(vector_index, queries: np.ndarray, n: int, params, offset: QueryOffset | None,
              tombstones: np.ndarray | None):
    """`search` in the index file alone, tombstones dropped."""
    if tombstones is None or not len(tombstones):
        return _search(vector_index, queries, n, params, offset)
    most = n + len(tombstones)
    live_total = vector_index.ntotal - len(tombstones)
    # Enough live results that the re-ranked pool behind them held as many live candidates as a
    # search of n in an index without tombstones would have (k_factor of them per result).
    needed = min(math.ceil(n * getattr(_inner(vector_index), "k_factor", 1)), live_total)
    fetch = min(most, 2 * math.ceil(needed / max(live_total / max(vector_index.ntotal, 1), 0.01)))
    while True:
        scores, ids = _search(vector_index, queries, fetch, params, offset)
        live = (ids >= 0) & ~is_member(ids, tombstones)
        if fetch >= most or (live.sum(axis=1) >= needed).all():
            break
        fetch = min(4 * fetch, most)
    out_scores = np.full((len(queries), n), -np.finfo(np.float32).max, np.float32)
    out_ids = np.full((len(queries), n), -1, np.int64)
    for row in range(len(queries)):
        keep = np.flatnonzero(live[row])[:n]
        out_scores[row, :len(keep)], out_ids[row, :len(keep)] = scores[row, keep], ids[row, keep]
    return out_scores, out_ids


def is_member(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """np.isin for a sorted id array, in O(len(values) log len(sorted_ids)) (no sort per call)."""
    at = np.searchsorted(sorted_ids, values).clip(max=max(len(sorted_ids) - 1, 0))
    return (sorted_ids[at] == values) if len(sorted_ids) else np.zeros(np.shape(values), bool)


def _search(vector_index, queries: np.ndarray, n: int, params, offset: QueryOffset | None):
    """`search` without tombstones."""
    if offset is None:
        return vector_index.search(queries, n, params=params)
    direction = offset.direction
    projected = np.ascontiguousarray(queries - np.outer(queries @ direction, direction), dtype=np.float32)
    _, candidates = vector_index.search(projected, max(n, RERANK_CANDIDATES), params=params)
    hub_scores = queries @ offset.hub_vectors.T
    scores = np.full((len(queries), n), -np.finfo(np.float32).max, np.float32)
    ids = np.full((len(queries), n), -1, np.int64)
    for row, (query, found) in enumerate(zip(queries, candidates)):
        found = found[found >= 0]
        hubs = _top(hub_scores[row], n)
        best_scores, best_ids = _best(np.concatenate([found, offset.hub_ids[hubs]]),
                                      np.concatenate([vector_index.reconstruct_batch(found) @ query,
                                                      hub_scores[row, hubs]]), n)
        scores[row, :len(best_ids)], ids[row, :len(best_ids)] = best_scores, best_ids
    return scores, ids


def _best(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the n best distinct ids, best first, ties by id."""
    ids, first = np.unique(ids, return_index=True)
    scores = scores[first]
    best = np.lexsort((ids, -scores))[:n]
    return scores[best], ids[best]


def full_vectors(vector_index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 (ntotal, d) view, no copy) of the full vectors a scan index stores to re-rank with."""
    import faiss

    storage = faiss.downcast_index(_inner(vector_index).refine_index)
    n, d = vector_index.ntotal, vector_index.d
    return (faiss.vector_to_array(vector_index.id_map).astype(np.int64),
            faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d))


def query_offset(queries: np.ndarray, vectors: np.ndarray, sample: int = 100_000) -> np.ndarray:
    """Unit direction from the database vectors' mean to the queries' mean: the modality gap when the
    queries are CLIP text embeddings of images like the database's (`QueryOffset`)."""
    step = max(1, len(vectors) // sample)
    gap = np.asarray(queries, np.float64).mean(axis=0) - np.asarray(vectors[::step], np.float64).mean(axis=0)
    return (gap / max(np.linalg.norm(gap), 1e-12)).astype(np.float32)


def search_params(index) -> str:
    """The index's current search parameters as a string such as 'nprobe=32' ('' for exact search)."""
    import faiss

    if is_scan(index):
        return f"k_factor={_inner(index).k_factor:g}"
    params = []
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        params.append(f"nprobe={ivf.nprobe}")
        quantizer = faiss.downcast_index(ivf.quantizer)
        if hasattr(quantizer, "hnsw"):
            params.append(f"quantizer_efSearch={quantizer.hnsw.efSearch}")
    elif hasattr(inner := _inner(index), "hnsw"):
        params.append(f"efSearch={inner.hnsw.efSearch}")
    return ",".join(params)


def set_search_params(index, params: str) -> None:
    """Apply a parameter string such as 'nprobe=32' (what `search_params` returns). FAISS's
    ParameterSpace sets all but a scan index's re-rank factor, which is set here."""
    import faiss

    if params.startswith("k_factor="):
        _inner(index).k_factor = float(params.split("=")[1])
    elif params:
        faiss.ParameterSpace().set_index_parameters(index, params)


def _candidate_params(index) -> list[str]:
    """Search settings from cheapest to most accurate."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        hnsw_quantizer = hasattr(faiss.downcast_index(ivf.quantizer), "hnsw")
        probes = [2**i for i in range(int(math.log2(ivf.nlist)) + 1)]
        return [f"nprobe={p}" + (f",quantizer_efSearch={max(2 * p, 64)}" if hnsw_quantizer else "") for p in probes]
    if is_scan(index):  # candidates re-ranked with full vectors: k_factor x k
        return [f"k_factor={f}" for f in (1, 2, 4, 8, 16, 32, 64, 128)]
    if search_params(index):  # HNSW
        return [f"efSearch={ef}" for ef in (16, 32, 64, 128, 256, 512)]
    return []


def tune_search_params(index, ids: np.ndarray, vectors: np.ndarray, k: int = 10,
                       queries: np.ndarray | None = None, offset: QueryOffset | None = None) -> tuple[str, bool]:
    """Set the cheapest parameters reaching TUNE_RECALL@k (else the most accurate); returns them and
    whether they reached it. Searches go through `search` with `offset`.

    The tuning queries are sampled database vectors (their own vector left out of truth and results)
    and, if given, `queries` (e.g. text embeddings): the setting must reach the target on both."""
    import faiss

    candidates = _candidate_params(index)
    n = len(vectors)
    if not candidates or n <= k + 1:
        return search_params(index), True
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(n, size=min(TUNE_QUERIES, n), replace=False))
    # Exact neighbours; each database query's own vector is dropped from truth and results.
    _, exact_rows = faiss.knn(vectors[rows], vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    sets = [(vectors[rows], [set(ids[r[r != own][:k]]) for r, own in zip(exact_rows, rows)], ids[rows])]
    if queries is not None and len(queries):
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        _, exact_rows = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        sets.append((queries, [set(ids[r]) for r in exact_rows], np.full(len(queries), -2, np.int64)))
    for params in candidates:
        set_search_params(index, params)
        recalls = []
        for qs, truth, own_ids in sets:
            _, found = search(index, qs, k + 1, offset=offset)
            recalls.append(np.mean([len(t & set(f[f != own][:k])) / k for t, f, own in zip(truth, found, own_ids)]))
        if min(recalls) >= TUNE_RECALL:
            return search_params(index), True
    return search_params(index), False


def encode_offset(offset: QueryOffset | None) -> str:
    """A query offset's direction as catalog meta: a JSON list (float32 values round-trip), '' for none."""
    return "" if offset is None else json.dumps([float(v) for v in offset.direction])


def decode_offset(text: str, vector_index, tombstones: np.ndarray,
                  added: tuple[np.ndarray, np.ndarray] | None = None) -> QueryOffset | None:
    """The query offset of catalog meta, its hubs found among the index's live vectors and `added`."""
    if not text:
        return None
    parts = [full_vectors(vector_index)] + ([added] if added is not None and len(added[0]) else [])
    offset = QueryOffset.learn(np.asarray(json.loads(text), np.float32), *parts)
    return offset.keeping(~np.isin(offset.hub_ids, tombstones))


def apply_changes(vector_index, ids: np.ndarray, vectors: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Add the clips newer than the base file and drop the removed ids, in place (writer and readers).
    Returns the removed ids the index keeps as tombstones, sorted (`is_scan`; `search` skips them)."""
    import faiss

    removed = np.ascontiguousarray(removed, dtype=np.int64)
    if len(removed) and not is_scan(vector_index):
        vector_index.remove_ids(faiss.IDSelectorBatch(removed))
        removed = removed[:0]
    for start in range(0, len(ids), 100_000):
        vector_index.add_with_ids(vectors[start:start + 100_000], ids[start:start + 100_000])
    return np.unique(removed)


# --- filtered search ------------------------------------------------------------------------------

EXACT_MAX = 4096  # allowed ids up to this many: score them all exactly (one small matrix product)
SCAN_FETCH_MAX = 65_536  # most results a filtered scan asks for before the exact pass


def search_among(vector_index, query: np.ndarray, n: int, allowed: np.ndarray, clip_vectors,
                 offset: QueryOffset | None = None, added: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Best `n` of the `allowed` clip ids by inner product: (ids int64, scores float32), best first.

    Returns min(n, len(allowed)) results whenever that many allowed ids are indexed. A scan index
    scores every code anyway: it is asked for more results (in proportion to how rare the allowed
    ids are, then x4) and the allowed ones are kept. Other indexes take a FAISS id selector, which
    restricts the search itself (a post-filter on an IVF index runs out of candidates for a rare
    label); when the approximate pass finds too few (the probed lists hold fewer matches), the
    search widens (IVF nprobe x4, HNSW efSearch x4). Last comes an exact pass over every allowed id;
    very selective filters (<= EXACT_MAX ids) go straight to it.
    `clip_vectors(ids)` gives the (len(ids), dim) clip vectors stored for ids (the exact pass);
    `offset`, `added`: as for `search` (a scan index only).
    """
    import faiss

    allowed = np.unique(np.asarray(allowed, dtype=np.int64))
    n = min(int(n), len(allowed))
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if len(allowed) > EXACT_MAX and is_scan(vector_index):
        if offset is not None:
            offset = offset.keeping(np.isin(offset.hub_ids, allowed))
        if added is not None:
            keep = is_member(added[0], allowed)
            added = (added[0][keep], added[1][keep])
        total = vector_index.ntotal
        fetch = min(total, SCAN_FETCH_MAX, max(RERANK_CANDIDATES, 2 * n * total // len(allowed)))
        while True:
            scores, ids = search(vector_index, query, fetch, offset=offset, added=added)
            keep = is_member(ids[0], allowed)
            if keep.sum() >= n:
                return ids[0][keep][:n].astype(np.int64), scores[0][keep][:n].astype(np.float32)
            if fetch >= min(total, SCAN_FETCH_MAX):
                break
            fetch = min(4 * fetch, total, SCAN_FETCH_MAX)
    elif len(allowed) > EXACT_MAX:
        selector = faiss.IDSelectorBatch(allowed)
        for params in _widening_params(vector_index, selector):
            try:
                scores, ids = search(vector_index, query, n, params=params, offset=offset)
            except RuntimeError:  # an index type that takes no selector: the exact pass below
                break
            keep = ids[0] >= 0
            if keep.sum() >= n:
                return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
    return exact_search(query[0], n, allowed, clip_vectors)


def exact_search(query: np.ndarray, n: int, ids: np.ndarray, clip_vectors,
                 chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Top `n` of `ids` scored exactly against their stored clip vectors (chunked: bounded memory)."""
    best_ids, best_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        scores = (clip_vectors(part) @ query).astype(np.float32)
        best_ids = np.concatenate([best_ids, part])
        best_scores = np.concatenate([best_scores, scores])
        if len(best_ids) > n:
            top = np.argpartition(-best_scores, n - 1)[:n]
            best_ids, best_scores = best_ids[top], best_scores[top]
    order = np.lexsort((best_ids, -best_scores))[:n]  # best first, ties by id
    return best_ids[order], best_scores[order]


def _widening_params(vector_index, selector):
    """FAISS search parameters with `selector`: the index's tuned setting, then wider ones."""
    import faiss

    try:
        ivf = faiss.extract_index_ivf(vector_index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        quantizer = faiss.downcast_index(ivf.quantizer)
        nprobe = max(1, ivf.nprobe)
        while True:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe, ivf.nlist))
            if hasattr(quantizer, "hnsw"):
                params.quantizer_params = faiss.SearchParametersHNSW(efSearch=max(2 * nprobe, quantizer.hnsw.efSearch))
            yield params
            if nprobe >= ivf.nlist:
                return
            nprobe *= 4
    if hasattr(inner := _inner(vector_index), "hnsw"):
        ef = max(16, inner.hnsw.efSearch)
        for _ in range(3):
            yield faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
            ef *= 4
    else:
        yield faiss.SearchParameters(sel=selector)
