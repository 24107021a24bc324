"""The FAISS index kinds a segment can be, how each is built, stored, opened and searched.

Every kind scores by inner product of L2-normalised float32 vectors (= cosine), holds int64 chunk
ids, and works at any dimension (384 for MiniLM):

| kind      | FAISS index                                   | stores per vector       | search     |
|-----------|-----------------------------------------------|-------------------------|------------|
| `flat`    | `IndexIDMap2(IndexFlatIP)`                    | the vector (4·d bytes)  | exact      |
| `hnsw`    | `IndexIDMap2(IndexHNSWFlat)`, inner product   | the vector + the graph  | approximate|
| `ivf_sq8` | `IndexIVFScalarQuantizer`, 8-bit, residuals   | d bytes                 | approximate|
| `ivf_pq`  | `IndexIVFPQ`, `pq_m` sub-quantizers of 8 bits | `pq_m` bytes            | approximate|

**Which kind a segment gets** (`kind_for`), the rule:

1. `kind="auto"` (the default): a segment of fewer than `auto_flat_below` vectors is `flat`, a
   larger one is `auto_large_kind`. One commit's worth of vectors is small, so it is exact and
   costs no training; bulk ingests and compactions reach the ANN kind.
2. An explicit kind applies to every segment, except that an IVF kind with fewer than
   `IVF_MIN_VECTORS` vectors is `flat`: too few points to train a coarse quantizer and a PQ
   codebook, and a flat scan of that many is faster than any index anyway.

The defaults come from `bench/index_scale.py` on this project's 2-core machine
(docs/index-scale.md). Large segments are HNSW: on clustered 384-d vectors calibrated to MiniLM's
neighbour structure, HNSW (M 32, efSearch 128) keeps recall@10 at 0.988 at 100k at p95 2.2 ms
(0.998 on real 10k), while IVF-SQ8 at 1M reaches only 0.87 at nprobe 128 (p95 10 ms; 8-bit codes alone
cap it at 0.98) and would need ~4x the lists for 0.95, past 30 ms. HNSW's price is its build
(about 33-90 s at 100k on 2 cores, so ~7-18 min extrapolated at 1M, not measured) and its size
(the float vectors plus the graph, ~1.8 KB a vector); IVF-SQ8 builds 1M in ~70 s into 0.4 KB a
vector and is the kind for segments where that matters. Flat's p95 passes ~5 ms near
`auto_flat_below` (p50 17 ms at 100k, single thread).

**Filters** (`search`): `allowed` (a metadata filter's chunk ids) and `excluded` (tombstones) are
applied inside the search, before the top-k, through a FAISS `IDSelector` in the search
parameters, never by cutting an unfiltered top-k. Two rules keep a selective filter from losing
results to the graph or the inverted lists:

* a selective filter is searched exactly over the allowed ids' stored vectors (`_exact`): for
  flat and HNSW the inner products with just those rows of the (mapped) storage; for IVF every
  inverted list scanned with the selector (exact over the stored codes, an id check per vector).
  Selective means fewer allowed ids (less excluded) than `exact_filter_below`, or so few that the
  scaled effort below would reach its cap anyway (`_exact_below`);
* otherwise the search effort is divided by the square of the share s of ids that can be
  returned (`efSearch` for HNSW, `nprobe` for IVF, capped at `MAX_EF_SEARCH` and at the number
  of lists). Dividing by s alone keeps the number of admissible vectors visited, but the filtered
  top-k lie about k/s ranks deep in the unfiltered ranking, where the index's recall is lower:
  measured on clustered vectors (100k, IVF-SQ8, 30% allowed), nprobe/s gave recall 0.77 where
  unfiltered search gives 0.98; nprobe/s² gives 0.96. There is no over-fetch.

A flat index is exact under a selector, so it only takes the row path when that is cheaper (a
filter allowing under 1/FLAT_GATHER_COST of its ids).

**Threads**: FAISS's OpenMP thread count is per OS thread, so `search` sets `search_threads` on
the calling thread for the call (a server's request threads never see a count set at start-up)
and `build` sets `build_threads`. A single query runs on one thread whatever the count.

**Memory mapping** (`read(path, mmap=True)`, faiss-cpu 1.15, measured by RssFile/RssAnon in
tests/rag/index/test_ann.py): every kind is opened with `IO_FLAG_MMAP_IFC`, which maps the large
arrays (flat and HNSW vectors, the HNSW graph, IVF inverted lists) from the file instead of
copying them, so server processes share the page cache. What stays in private memory: the
`IndexIDMap2` reverse map (id -> row, rebuilt at open: about 40 bytes an id), IVF's direct map
(id -> list position, a hash table also rebuilt at open) and the IVF centroids. `IO_FLAG_MMAP`
alone maps only IVF lists (flat and HNSW are copied), and `IO_FLAG_MMAP | IO_FLAG_MMAP_IFC` is
refused for IVF. A mapped index is read-only: adding to it makes FAISS abort the process (segments
never change, so nothing here adds to a read index).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

Kind = Literal["flat", "hnsw", "ivf_sq8", "ivf_pq"]
KINDS: tuple[Kind, ...] = ("flat", "hnsw", "ivf_sq8", "ivf_pq")

IVF_MIN_VECTORS = 10_000  # below: IVF kinds are flat (rule 2 above); PQ needs 39 x 256 to train
MIN_TRAIN_PER_LIST = 39  # FAISS warns below 39 training points per centroid
MAX_EF_SEARCH = 4096  # cap of HNSW's filter-scaled efSearch; beyond it exact search is cheaper
NORM_TOLERANCE = 1e-3  # |‖v‖ - 1| allowed for "L2-normalised" (float32 round-off of MiniLM output)
BITMAP_MAX_IDS = 1 << 27  # ids below 2^27 may be filtered by a bitmap (<= 16 MiB); above, a hash set
FLAT_GATHER_COST = 4  # a gathered row costs ~this many streamed rows of a flat scan (measured)
BITS_PER_HASHED_ID = 64  # memory of one id in IDSelectorBatch (hash set + Bloom), in bits


@dataclass(frozen=True)
class AnnParams:
    """How segments are indexed and searched (settings `index.ann.*`); defaults measured in
    docs/index-scale.md."""

    kind: Literal["auto", "flat", "hnsw", "ivf_sq8", "ivf_pq"] = "auto"
    auto_large_kind: Kind = "hnsw"  # what `auto` gives segments of auto_flat_below or more
    auto_flat_below: int = 20_000  # flat search p95 stays under ~5 ms below this (1 thread)
    hnsw_m: int = 32  # graph degree: recall vs memory (2·M int32 neighbours a vector on level 0)
    hnsw_ef_construction: int = 80  # build effort: recall of the graph vs build time
    hnsw_ef_search: int = 128  # search effort: recall vs latency (64: 0.978, 128: 0.988 at 100k)
    ivf_nlist: int = 0  # inverted lists; 0 = from size: 4·sqrt(n), at least 39 points a list
    ivf_nprobe: int = 128  # lists scanned per query: recall vs latency (0.87 at 1M, p95 10 ms)
    ivf_train_per_list: int = 64  # training sample = this x nlist vectors (seeded); FAISS min 39
    pq_m: int = 48  # PQ sub-quantizers (bytes per vector); must divide the dimension
    exact_filter_below: int = 20_000  # fewer candidates than this under a filter: exact search
    seed: int = 0  # training sample and k-means seed: IVF builds are deterministic given it
    search_threads: int = 1  # FAISS threads of one search call (see _threads); 0 = every core
    build_threads: int = 0  # FAISS threads of a build (training, adding); 0 = every core

    def __post_init__(self) -> None:
        if self.kind != "auto" and self.kind not in KINDS:
            raise ValueError(f"index.ann.kind={self.kind!r}: choose auto or one of {', '.join(KINDS)}")
        if self.auto_large_kind not in KINDS:
            raise ValueError(
                f"index.ann.auto_large_kind={self.auto_large_kind!r}: choose one of {', '.join(KINDS)}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value < 0:
                raise ValueError(f"index.ann.{f.name}={value}: must be >= 0")
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe", "pq_m"):
            if getattr(self, name) < 1:
                raise ValueError(f"index.ann.{name}={getattr(self, name)}: must be >= 1")
        if self.ivf_train_per_list < MIN_TRAIN_PER_LIST:
            raise ValueError(
                f"index.ann.ivf_train_per_list={self.ivf_train_per_list}: must be >= "
                f"{MIN_TRAIN_PER_LIST} (FAISS's minimum training points per list)"
            )


# --- the auto rule and building ------------------------------------------------------------------


def kind_for(n: int, params: AnnParams) -> Kind:
    """The kind a segment of ``n`` vectors gets (the rule in the module docstring)."""
    kind: Kind
    if params.kind == "auto":
        kind = "flat" if n < params.auto_flat_below else params.auto_large_kind
    else:
        kind = params.kind
    if kind.startswith("ivf") and n < IVF_MIN_VECTORS:
        return "flat"
    return kind


def nlist_for(n: int, params: AnnParams) -> int:
    """Inverted lists for ``n`` vectors: ``ivf_nlist``, or 4·sqrt(n) (FAISS's guideline range is
    4-16·sqrt(n); the low end keeps training cheap), never fewer than 39 vectors a list."""
    wanted = params.ivf_nlist or round(4 * math.sqrt(n))
    return max(1, min(wanted, n // MIN_TRAIN_PER_LIST))


def build(vectors: np.ndarray, ids: np.ndarray, params: AnnParams) -> faiss.Index:
    """An index of the kind ``kind_for(len(ids), params)`` holding ``vectors`` under ``ids``.

    ``vectors`` must be L2-normalised (checked: a raw vector would make inner product mean
    nothing); IVF kinds train on a seeded sample, so a build is deterministic given
    ``params.seed`` (HNSW's graph depends on thread timing when FAISS inserts in parallel).
    """
    x, labels = _checked(vectors, ids)
    kind = kind_for(len(labels), params)
    d = x.shape[1]
    if kind == "flat":
        index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    elif kind == "hnsw":
        graph = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = params.hnsw_ef_construction
        graph.hnsw.efSearch = params.hnsw_ef_search
        index = faiss.IndexIDMap2(graph)
    with _threads(params.build_threads):
        if kind.startswith("ivf"):
            index = _trained_ivf(kind, x, params)
        index.add_with_ids(x, labels)
    return index


def _checked(vectors: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated float32 vectors and int64 ids, in id order (so that an id's row is found by
    binary search: ``_stored``); callers that pass sorted ids (segments do) pay no copy."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    labels = np.ascontiguousarray(ids, dtype=np.int64)
    if x.ndim != 2 or labels.ndim != 1 or len(x) != len(labels):
        raise ValueError(f"vectors {x.shape} and ids {labels.shape}: need (n, d) and (n,)")
    if len(labels) > 1 and not bool(np.all(labels[1:] > labels[:-1])):
        order = np.argsort(labels, kind="stable")
        x, labels = np.ascontiguousarray(x[order]), np.ascontiguousarray(labels[order])
        if not bool(np.all(labels[1:] > labels[:-1])):
            raise ValueError("ids must be unique: a chunk id names one vector")
    if len(x):
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        worst = float(np.max(np.abs(norms - 1.0)))
        if worst > NORM_TOLERANCE:
            raise ValueError(f"vectors must be L2-normalised (a norm is off by {worst:.3g})")
    return x, labels


def _trained_ivf(kind: Kind, x: np.ndarray, params: AnnParams) -> faiss.Index:
    n, d = x.shape
    nlist = nlist_for(n, params)
    quantizer = faiss.IndexFlatIP(d)
    if kind == "ivf_sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        if d % params.pq_m:
            raise ValueError(f"index.ann.pq_m={params.pq_m} must divide the dimension {d}")
        index = faiss.IndexIVFPQ(quantizer, d, nlist, params.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        index.pq.cp.seed = params.seed
    index.cp.seed = params.seed
    index.nprobe = params.ivf_nprobe
    sample = min(n, params.ivf_train_per_list * nlist)
    rows = np.sort(np.random.default_rng(params.seed).choice(n, size=sample, replace=False))
    index.train(x[rows])
    # Reconstruction by id (exact filtered search, VectorReadable, compaction) needs id -> list
    # position; chunk ids are arbitrary int64, hence a hash table rather than an array.
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


# --- files ---------------------------------------------------------------------------------------


def write(index: faiss.Index, path: Path | str) -> None:
    """Write ``index`` to ``path`` (the caller renames it into place: rag.fsutil.atomic_file)."""
    faiss.write_index(index, str(path))


def read(path: Path | str, mmap: bool = True) -> faiss.Index:
    """Open an index file; with ``mmap`` its large arrays stay in the file's shared pages (module
    docstring) and the index is read-only."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` FAISS (OpenMP) threads, 0 = every core. OpenMP keeps the count
    per OS thread, so it is set on the calling thread, for the call: setting it once at start-up
    would not reach a server's request threads. A single query runs on one thread whatever the
    count (FAISS parallelises over queries), and on a busy 2-core machine idle OpenMP workers
    only add waiting (docs/index-scale.md: search p95 several times higher with 2 threads)."""
    wanted = n or os.cpu_count() or 1
    before = faiss.omp_get_max_threads()
    if wanted != before:
        faiss.omp_set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted != before:
            faiss.omp_set_num_threads(before)


# --- what an index holds -------------------------------------------------------------------------


def kind_of(index: faiss.Index) -> Kind:
    """Which of KINDS a built or read index is."""
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivf_sq8"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivf_pq"
    raise TypeError(f"{type(index).__name__} is not an index rag.index.ann builds")


def size(index: faiss.Index) -> int:
    """Vectors stored."""
    return int(index.ntotal)


def ids_of(index: faiss.Index) -> np.ndarray:
    """Every id stored, sorted (int64)."""
    if isinstance(index, faiss.IndexIDMap2):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    invlists = faiss.extract_index_ivf(index).invlists
    parts = [_list_ids(invlists, i) for i in range(invlists.nlist)]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _list_ids(invlists: faiss.InvertedLists, number: int) -> np.ndarray:
    n = invlists.list_size(number)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return faiss.rev_swig_ptr(invlists.get_ids(number), n).astype(np.int64)


def reconstruct(index: faiss.Index, ids: np.ndarray) -> np.ndarray:
    """The stored vector of each id, one row each: exact for flat and hnsw (they keep the
    vectors), decoded for ivf_sq8 (8-bit residuals: off by ~1e-3 in cosine) and ivf_pq
    (product codes: cosine to the original ~0.9 at pq_m=48, d=384). KeyError for an id the
    index does not hold."""
    keys = np.ascontiguousarray(ids, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    order = np.argsort(keys, kind="stable")
    vectors, held = _stored(index, keys[order])
    if len(held) != len(keys):
        missing = np.setdiff1d(keys, held)
        raise KeyError(f"ids not in this index: {missing[:5].tolist()}")
    out = np.empty_like(vectors)
    out[order] = vectors
    return out


def _stored(index: faiss.Index, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, ids) of those of ``ids`` (sorted) the index holds: flat and HNSW rows read
    straight from the (mapped) storage array, IVF vectors decoded through the direct map."""
    if isinstance(index, faiss.IndexIDMap2):
        rows, held = _rows_of(index, ids)
        return _storage(index)[rows], held
    try:
        return index.reconstruct_batch(ids), ids
    except RuntimeError:  # some ids live in another segment: keep the ones held here
        held = np.asarray([i for i in ids if _holds(index, int(i))], dtype=np.int64)
        return (index.reconstruct_batch(held) if len(held) else np.zeros((0, index.d), np.float32)), held


def _rows_of(index: faiss.IndexIDMap2, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(storage rows, ids) of those of ``ids`` (sorted) a flat or HNSW index holds. build() adds
    rows in id order, so a binary search in the id map finds them; a map in another order (a
    file this module did not write) is searched through its sort order instead."""
    n = index.ntotal
    if n == 0 or len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    id_map = faiss.rev_swig_ptr(index.id_map.data(), n)
    rows = np.minimum(np.searchsorted(id_map, ids), n - 1)
    held = id_map[rows] == ids
    if not held.all() and not bool(np.all(id_map[1:] > id_map[:-1])):
        order = np.argsort(id_map, kind="stable")
        rows = order[np.minimum(np.searchsorted(id_map[order], ids), n - 1)]
        held = id_map[rows] == ids
    return rows[held], ids[held]


def _storage(index: faiss.IndexIDMap2) -> np.ndarray:
    """The (n, d) float32 vectors of a flat or HNSW index, as a view (no copy)."""
    inner = faiss.downcast_index(index.index)
    flat = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSW) else inner
    return faiss.rev_swig_ptr(flat.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def _holds(index: faiss.Index, key: int) -> bool:
    try:
        index.reconstruct(key)
    except RuntimeError:
        return False
    return True


# --- search ----------------------------------------------------------------------------------------


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    *,
    allowed: np.ndarray | None = None,
    excluded: np.ndarray | None = None,
    params: AnnParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of each query row: (scores, ids), each (nq, k), best first; missing places
    (fewer than k candidates) are id -1, score -inf.

    ``allowed``: only these ids may be returned (a metadata filter; ids the index does not hold
    are ignored); ``excluded``: never returned (tombstones). Both apply before the top-k (module
    docstring: exact search under a selective filter, scaled effort otherwise).
    """
    params = params or AnnParams()
    q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    with _threads(params.search_threads):
        return _search(index, q, k, allowed, excluded, params)


def _search(
    index: faiss.Index,
    q: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    excluded: np.ndarray | None,
    params: AnnParams,
) -> tuple[np.ndarray, np.ndarray]:
    if k <= 0 or index.ntotal == 0:
        return _empty(len(q), max(k, 0))
    allowed = _sorted_ids(allowed)
    excluded = _sorted_ids(excluded)
    if allowed is not None and len(allowed) < _exact_below(index, params):
        if excluded is not None:
            allowed = allowed[~np.isin(allowed, excluded)]
        return _exact(index, q, k, allowed)
    candidates = len(allowed) if allowed is not None else index.ntotal - _count(excluded)
    share = min(1.0, max(candidates, 1) / index.ntotal)
    keep: list[object] = []  # selectors and bitmaps FAISS points at: alive until the search ends
    selector = _selector(allowed, excluded, keep)
    scores, labels = index.search(q, k, params=_search_params(index, params, share, selector))
    scores[labels < 0] = -np.inf
    return scores, labels


def _exact_below(index: faiss.Index, params: AnnParams) -> int:
    """Filters allowing fewer ids than this are searched exactly (``_exact``): fewer than
    ``exact_filter_below``, or so few that the filter-scaled effort would reach its cap anyway
    (HNSW's MAX_EF_SEARCH; IVF's every list, which is what the exact IVF search scans). A flat
    index is exact under a selector already, and gathering scattered rows costs about
    FLAT_GATHER_COST times a streamed row, so flat gathers only below that share."""
    n, kind = index.ntotal, kind_of(index)
    if kind == "flat":
        return min(params.exact_filter_below, n // FLAT_GATHER_COST)
    if kind == "hnsw":  # ef / share**2 >= MAX_EF_SEARCH
        capped = math.ceil(n * math.sqrt(params.hnsw_ef_search / MAX_EF_SEARCH))
    else:  # nprobe / share**2 >= nlist
        capped = math.ceil(n * math.sqrt(params.ivf_nprobe / faiss.extract_index_ivf(index).nlist))
    return max(params.exact_filter_below, capped)


def _sorted_ids(ids: np.ndarray | None) -> np.ndarray | None:
    """``ids`` as sorted unique int64; callers usually pass them sorted (the store's filter ids,
    a segment's tombstones), so the O(n) check spares an O(n log n) sort on every query."""
    if ids is None:
        return None
    a = np.asarray(ids, dtype=np.int64)
    return a if len(a) < 2 or bool(np.all(a[1:] > a[:-1])) else np.unique(a)


def _count(ids: np.ndarray | None) -> int:
    return 0 if ids is None else len(ids)


def _empty(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


def _exact(index: faiss.Index, q: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among ``allowed`` by the stored vectors. Flat and HNSW: inner products with
    just those rows of the storage (no copy, no BLAS call: OpenBLAS threads stall on a busy
    machine). IVF: every inverted list scanned with the allowed ids as selector, which is exact
    over the stored codes and costs an id check per stored vector, far less than decoding the
    allowed vectors one by one through the direct map."""
    if len(allowed) == 0:
        return _empty(len(q), k)
    if not isinstance(index, faiss.IndexIDMap2):
        keep: list[object] = []
        sp = faiss.SearchParametersIVF(nprobe=faiss.extract_index_ivf(index).nlist)
        sp.sel = _member_selector(allowed, keep)
        scores, labels = index.search(q, k, params=sp)
        scores[labels < 0] = -np.inf
        return scores, labels
    rows, held = _rows_of(index, allowed)
    if len(held) == 0:
        return _empty(len(q), k)
    scores = _inner_products(_storage(index), q, rows)
    return _top_k(scores, held, k)


def _inner_products(storage: np.ndarray, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(nq, len(rows)) inner products of each query with those storage rows (FAISS's SIMD)."""
    out = np.empty((len(q), len(rows)), dtype=np.float32)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    for i in range(len(q)):
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(out[i]),
            faiss.swig_ptr(q[i]),
            faiss.swig_ptr(storage),
            faiss.swig_ptr(rows),
            storage.shape[1],
            1,
            len(rows),
        )
    return out


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of each row of ``scores`` (columns named by ``ids``): score descending,
    then id ascending; padded with -inf / -1."""
    top = min(k, len(ids))
    part = np.argpartition(-scores, top - 1, axis=1)[:, :top]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((ids[part], -part_scores), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    out_scores, out_ids = _empty(len(scores), k)
    out_scores[:, :top] = np.take_along_axis(scores, best, axis=1)
    out_ids[:, :top] = ids[best]
    return out_scores, out_ids


def _selector(
    allowed: np.ndarray | None, excluded: np.ndarray | None, keep: list[object]
) -> faiss.IDSelector | None:
    """allowed and not excluded, as one FAISS selector (None: every id may be returned)."""
    parts: list[faiss.IDSelector] = []
    if allowed is not None:
        parts.append(_member_selector(allowed, keep))
    if excluded is not None and len(excluded):
        dead = _member_selector(excluded, keep)
        keep.append(dead)
        parts.append(faiss.IDSelectorNot(dead))
    if len(parts) < 2:
        return parts[0] if parts else None
    keep.extend(parts)
    return faiss.IDSelectorAnd(parts[0], parts[1])


def _member_selector(ids: np.ndarray, keep: list[object]) -> faiss.IDSelector:
    """A bitmap (a test is one memory read) when the ids are non-negative, below BITMAP_MAX_IDS
    and dense enough that one bit per id up to the largest costs no more than FAISS's hash set
    (IDSelectorBatch: about 64 bits an id with its Bloom filter); else that hash set."""
    top = int(ids[-1]) + 1 if len(ids) else 0
    if len(ids) and ids[0] >= 0 and top < BITMAP_MAX_IDS and top <= BITS_PER_HASHED_ID * len(ids):
        bits = np.zeros(top, dtype=bool)
        bits[ids] = True
        bitmap = np.packbits(bits, bitorder="little")
        keep.append(bitmap)
        return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
    return faiss.IDSelectorBatch(ids)


def _search_params(
    index: faiss.Index, params: AnnParams, share: float, selector: faiss.IDSelector | None
) -> faiss.SearchParameters:
    """Search parameters of the index's kind, the effort divided by the square of the share of ids
    that can be returned (module docstring)."""
    kind = kind_of(index)
    if kind == "hnsw":
        ef = min(MAX_EF_SEARCH, math.ceil(params.hnsw_ef_search / share**2))
        sp = faiss.SearchParametersHNSW(efSearch=ef)
    elif kind.startswith("ivf"):
        ivf = faiss.extract_index_ivf(index)
        nprobe = min(ivf.nlist, math.ceil(params.ivf_nprobe / share**2))
        sp = faiss.SearchParametersIVF(nprobe=nprobe)
    else:
        sp = faiss.SearchParameters()
    if selector is not None:
        sp.sel = selector
    return sp
