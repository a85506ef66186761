"""FAISS vector index chosen by corpus size (autofaiss rules, REFERENCE.md), with tuned search parameters.

| clips            | index (factory string)                  | why                                      |
| ---------------- | --------------------------------------- | ---------------------------------------- |
| < 1k             | `Flat`                                  | exact search is already instant          |
| < 10k            | `HNSW32`                                | graph search, no training needed         |
| ≤ 1M (fits RAM)  | `IVF{K},Flat`, K ≈ 4·√N (power of 2)    | full vectors, inverted lists             |
| beyond           | `OPQ{m}_{4m},IVF{K}_HNSW32,PQ{m}`       | m-byte codes, K = 16k–64k (memory bound) |

All indexes use inner product on L2-normalized vectors (= cosine) and carry the caller's int64
ids (IVF indexes store ids natively, the others are wrapped in `IndexIDMap2`).

Search-time parameters (IVF `nprobe`, HNSW `efSearch`) are tuned when the index is built: sampled
database vectors are used as queries, their exact neighbours (themselves excluded) are the truth,
and the cheapest setting that reaches TUNE_RECALL@10 is set on the index. Real queries are CLIP
*text* embeddings, which lie outside the image vectors' distribution (the modality gap) and need
more search effort for the same recall; so the build also embeds TUNING_CAPTIONS with the index's
text encoder and the setting must reach TUNE_RECALL on those queries too. Those text queries also
teach the IVF routing: their shared offset from the image vectors (`query_offset`) is projected out
of the centroids when that routes them to their neighbours' lists better (`route_without_offset`),
so they need about the nprobe database vectors need, not every list. (autofaiss also caps
parameters by a measured latency budget; we do not, so that the same vectors always give the same
index, whatever else the machine is doing. scripts/bench_search.py measures latency.)
FAISS stores those parameters in the index file; `search_params(index)` gives them as a
`faiss.ParameterSpace` string for the catalog, and `set_search_params` applies such a string.
"""

from __future__ import annotations

import math

import numpy as np

FLAT_MAX = 1_000  # below: exact search
HNSW_MAX = 10_000  # below: HNSW graph
IVF_FLAT_MAX = 1_000_000  # up to: IVF with full vectors (if they fit FLAT_MEMORY_BUDGET)
FLAT_MEMORY_BUDGET = 8 * 2**30  # bytes of raw float32 vectors an IVF,Flat index may hold
HNSW_NEIGHBOURS = 32
TRAIN_POINTS_PER_CLUSTER = 64  # autofaiss trains on 30–256 points per cluster; FAISS warns below 39
KMEANS_ITERATIONS = 10  # FAISS defaults to 25; 10 gives nearly the same centroids at 40% of the cost
TUNE_RECALL = 0.97  # recall@10 the tuned parameters must reach on the tuning queries
TUNE_QUERIES = 256


COMPACT_FRACTION = 0.25  # fold added/removed vectors into the base file once they reach this share of it
RETRAIN_GROWTH = 4  # retrain a trained (IVF) index when the corpus grows (or shrinks) by this factor


def clip_vectors(frames: np.ndarray) -> np.ndarray:
    """(n, K, dim) per-frame vectors → (n, dim) float32 clip vectors: the L2-normalized mean.

    The one definition, used by the builder, the reader and the tests' fake index alike."""
    frames = np.asarray(frames, dtype=np.float32)
    mean = frames.mean(axis=1)
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def index_family(spec: str) -> str:
    """The kind of index a factory string names: flat, hnsw, ivf (full vectors) or ivf-pq."""
    if spec == "Flat":
        return "flat"
    if spec.startswith("HNSW"):
        return "hnsw"
    return "ivf" if spec.endswith(",Flat") else "ivf-pq"


def plan_update(base_spec: str, base_count: int, trained_for: int, total: int, added: int, removed: int,
                dim: int) -> tuple[str, str]:
    """What a build does to the vector index: (action, reason for the build report).

    - "build"/"retrain": a new index from every clip vector, when there is none yet, when the corpus
      moved to another kind of index (choose_index_spec; full-vector IVF becomes compressed codes
      only when the vectors outgrow FLAT_MEMORY_BUDGET), or when a trained (IVF) index holds
      RETRAIN_GROWTH x more (or fewer) vectors than it was trained on;
    - "compact": rewrite the base file as base + added - removed (same training), once the changes
      reach COMPACT_FRACTION of it (or ids must leave an HNSW graph, which cannot remove them);
    - "add": leave the base file; readers add the new vectors to the trained index and remove the
      dropped ids when they open it (work proportional to the change);
    - "keep": nothing changed.
    """
    wanted = choose_index_spec(total, dim)
    if not base_spec:
        return "build", f"built {wanted} over {total:,} clips"
    # Another kind of index: at once for the small kinds (cheap to build); from full IVF vectors to
    # compressed codes only when the vectors outgrow their memory budget (else the 4x rule below
    # retrains into it), so a corpus sitting at the 1M boundary does not retrain for one video.
    stay_flat_ivf = (index_family(base_spec), index_family(wanted)) == ("ivf", "ivf-pq") and \
        total * dim * 4 <= FLAT_MEMORY_BUDGET
    if index_family(wanted) != index_family(base_spec) and not stay_flat_ivf:
        return "retrain", f"retrained: {total:,} clips need {wanted} instead of {base_spec}"
    if "IVF" in base_spec and not trained_for / RETRAIN_GROWTH <= total <= RETRAIN_GROWTH * trained_for:
        return "retrain", (f"retrained as {wanted}: {total:,} clips is outside {RETRAIN_GROWTH}x the "
                           f"{trained_for:,} the index was trained for")
    if added == 0 and removed == 0:
        return "keep", f"kept the {base_spec} index ({total:,} clips)"
    if (removed and index_family(base_spec) == "hnsw") or added + removed > COMPACT_FRACTION * max(base_count, 1):
        return "compact", (f"compacted the {base_spec} index: +{added:,} / -{removed:,} vectors "
                           f"into its {base_count:,} (same training)")
    return "add", (f"added {added:,} vectors to the trained {base_spec} index and removed {removed:,} ids "
                   f"(base {base_count:,}; trained for {trained_for:,} clips)")


def _power_of_two(x: float) -> int:
    return 2 ** max(0, round(math.log2(max(x, 1.0))))


def choose_index_spec(n: int, dim: int) -> str:
    """FAISS factory string for n vectors of dimension dim (autofaiss rules, REFERENCE.md)."""
    if n < FLAT_MAX:
        return "Flat"
    if n < HNSW_MAX:
        return f"HNSW{HNSW_NEIGHBOURS}"
    if n <= IVF_FLAT_MAX and n * dim * 4 <= FLAT_MEMORY_BUDGET:
        # K ≈ 4·√N, but never fewer than 39 training points per cluster.
        clusters = min(_power_of_two(4 * math.sqrt(n)), 2 ** int(math.log2(n / 39)))
        return f"IVF{clusters},Flat"
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
    """A FAISS inner-product index over L2-normalized float32 `vectors` whose ids are `ids` (int64).

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
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = KMEANS_ITERATIONS
        rng = np.random.default_rng(0)
        count = min(n, TRAIN_POINTS_PER_CLUSTER * ivf.nlist)
        index.train(vectors[np.sort(rng.choice(n, size=count, replace=False))])
    if tune_queries is not None and len(tune_queries) and index_family(spec) == "ivf":
        route_without_offset(faiss.extract_index_ivf(index), query_offset(tune_queries, vectors), vectors,
                             tune_queries)
    for start in range(0, n, 100_000):
        index.add_with_ids(vectors[start:start + 100_000], ids[start:start + 100_000])
    tune_search_params(index, ids, vectors, queries=tune_queries)
    return index


def query_offset(queries: np.ndarray, vectors: np.ndarray, sample: int = 100_000) -> np.ndarray:
    """Unit direction from the database vectors' mean to the queries' mean: the modality gap when the
    queries are CLIP text embeddings of images like the database's (module doc, `route_without_offset`)."""
    step = max(1, len(vectors) // sample)
    gap = np.asarray(queries, np.float64).mean(axis=0) - np.asarray(vectors[::step], np.float64).mean(axis=0)
    return (gap / max(np.linalg.norm(gap), 1e-12)).astype(np.float32)


def route_without_offset(ivf, offset: np.ndarray, vectors: np.ndarray, queries: np.ndarray) -> bool:
    """Make the IVF lists' routing ignore the direction `offset` (unit), when that routes the tuning
    `queries` and database vectors to their true neighbours' lists better: every centroid c becomes
    c - (c·o)o, before any vector is added. Returns whether it did.

    Text queries carry a strong component along the modality gap shared by all of them. Its dot
    product with the centroids varies from list to list (noise of size |c|/√dim), and over thousands
    of lists that noise can outrank a query's weak pull toward its own list, so nprobe must grow to
    find it. With the offset projected out of the centroids, q·c' = (q - (q·o)o)·c': the query is
    routed as if it had no offset, while database vectors (x·o ≈ 0) are routed as before. Lists
    still hold the full vectors and scores stay exact inner products with the query as given, so
    this changes which lists are probed, nothing else; it lives in the index file (filtered search
    and added vectors go through the same centroids). When the offset's dot product with the
    database vectors does decide the true neighbours (low dimensions), routing with it is right, and
    the measurement below keeps the centroids as trained."""
    import faiss

    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    projected = centroids - np.outer(centroids @ offset, offset)
    rng = np.random.default_rng(2)
    own = vectors[np.sort(rng.choice(len(vectors), size=min(TUNE_QUERIES, len(vectors)), replace=False))]
    probes = [p for p in (1, 4, 16, 64) if p < ivf.nlist] or [1]
    query_sets = [(qs, faiss.knn(qs, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)[1])
                  for qs in (np.ascontiguousarray(queries, np.float32), own)]
    coverage = {}
    for name, cents in (("trained", centroids), ("projected", projected)):
        found = []
        for qs, truth in query_sets:
            _, truth_lists = faiss.knn(vectors[truth.ravel()], cents, 1, metric=faiss.METRIC_INNER_PRODUCT)
            _, probed = faiss.knn(qs, cents, max(probes), metric=faiss.METRIC_INNER_PRODUCT)
            truth_lists = truth_lists.reshape(len(qs), 10)
            found.append(np.mean([np.isin(truth_lists, probed[:, :p]).mean() for p in probes]))
        coverage[name] = min(found)  # the worse of text-like and database queries
    if coverage["projected"] <= coverage["trained"]:
        return False
    ivf.quantizer.reset()
    ivf.quantizer.add(np.ascontiguousarray(projected, dtype=np.float32))
    return True


def search_params(index) -> str:
    """The index's current search parameters as a `faiss.ParameterSpace` string ('' for exact search)."""
    import faiss

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
    else:
        inner = faiss.downcast_index(index.index if hasattr(index, "id_map") else index)
        if hasattr(inner, "hnsw"):
            params.append(f"efSearch={inner.hnsw.efSearch}")
    return ",".join(params)


def set_search_params(index, params: str) -> None:
    """Apply a `faiss.ParameterSpace` string such as 'nprobe=32' (what `search_params` returns)."""
    import faiss

    if params:
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
    if search_params(index):  # HNSW
        return [f"efSearch={ef}" for ef in (16, 32, 64, 128, 256, 512)]
    return []


def tune_search_params(index, ids: np.ndarray, vectors: np.ndarray, k: int = 10,
                       queries: np.ndarray | None = None) -> str:
    """Set the cheapest parameters reaching TUNE_RECALL@k (else the most accurate); returns them.

    The tuning queries are sampled database vectors (their own vector left out of truth and results)
    and, if given, `queries` (e.g. text embeddings): the setting must reach the target on both."""
    import faiss

    candidates = _candidate_params(index)
    n = len(vectors)
    if not candidates or n <= k + 1:
        return search_params(index)
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
            _, found = index.search(qs, k + 1)
            recalls.append(np.mean([len(t & set(f[f != own][:k])) / k for t, f, own in zip(truth, found, own_ids)]))
        if min(recalls) >= TUNE_RECALL:
            break
    return search_params(index)


# --- filtered search ------------------------------------------------------------------------------

EXACT_MAX = 4096  # allowed ids up to this many: score them all exactly (one small matrix product)


def search_among(vector_index, query: np.ndarray, n: int, allowed: np.ndarray,
                 clip_vectors) -> tuple[np.ndarray, np.ndarray]:
    """Best `n` of the `allowed` clip ids by inner product: (ids int64, scores float32), best first.

    Returns min(n, len(allowed)) results whenever that many allowed ids are indexed. A FAISS id
    selector restricts the search itself (a post-filter on an IVF index runs out of candidates for
    a rare label). When the approximate pass finds too few (the probed lists hold fewer matches),
    the search widens (IVF nprobe x4, HNSW efSearch x4) and finally scores every allowed id
    exactly; very selective filters (<= EXACT_MAX ids) go straight to that exact pass.
    `clip_vectors(ids)` gives the (len(ids), dim) clip vectors stored for ids (the exact pass).
    """
    import faiss

    allowed = np.unique(np.asarray(allowed, dtype=np.int64))
    n = min(int(n), len(allowed))
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if len(allowed) > EXACT_MAX:
        selector = faiss.IDSelectorBatch(allowed)
        for params in _widening_params(vector_index, selector):
            try:
                scores, ids = vector_index.search(query, n, params=params)
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
    inner = faiss.downcast_index(vector_index.index if hasattr(vector_index, "id_map") else vector_index)
    if hasattr(inner, "hnsw"):
        ef = max(16, inner.hnsw.efSearch)
        for _ in range(3):
            yield faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
            ef *= 4
    else:
        yield faiss.SearchParameters(sel=selector)
