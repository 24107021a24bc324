"""rag.index.ann: every kind builds, survives a file round trip (mapped or read), finds what
exact search finds (recall floors per kind at the default parameters), and applies filters and
tombstones before the top-k."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.index import ann

N = 20_000  # vectors of the shared set: large enough for IVF to train at its default size
D = 384  # MiniLM's dimension
CLUSTERS = 200  # topics of the synthetic set
SPREAD = 0.06  # per-coordinate noise around a topic centre (a topic's vectors: cosine ~0.5-0.7)
QUERIES = 200
K = 10
# recall@10 against exact search at AnnParams() defaults on this set (measured: flat 1.0,
# hnsw 1.0, ivf_sq8 0.99, ivf_pq 0.55); the floors leave room for platform differences.
RECALL_FLOOR = {"flat": 1.0, "hnsw": 0.97, "ivf_sq8": 0.95, "ivf_pq": 0.45}
FAST_KINDS = ("flat", "hnsw", "ivf_sq8")  # ivf_pq's codebook training takes ~10 s: slow tier


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((CLUSTERS, D)))
    member = rng.integers(0, CLUSTERS, n)
    return _unit(centres[member] + SPREAD * rng.standard_normal((n, D)))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, ids, queries): ids spread out (chunk ids are not row numbers), queries are
    perturbed vectors of the same distribution that are not in the set."""
    x = _clustered(N + QUERIES, seed=1)
    ids = np.arange(N, dtype=np.int64) * 3 + 11
    rng = np.random.default_rng(2)
    queries = _unit(x[N:] + 0.02 * rng.standard_normal((QUERIES, D)))
    return x[:N], ids, queries


@pytest.fixture(scope="module")
def indexes(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, faiss.Index]:
    x, ids, _ = data
    return {kind: ann.build(x, ids, ann.AnnParams(kind=kind)) for kind in FAST_KINDS}


@pytest.fixture(scope="module")
def exact(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Exact top-K ids of every query (numpy, independent of FAISS)."""
    x, ids, queries = data
    return _exact_ids(queries, x, ids, K)


def _exact_ids(queries: np.ndarray, x: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ x.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.sum(hits) / truth.size)


# --- the auto rule and parameters -----------------------------------------------------------------


def test_auto_picks_flat_below_the_threshold_and_the_large_kind_from_it() -> None:
    params = ann.AnnParams(auto_flat_below=50_000, auto_large_kind="ivf_sq8")
    assert ann.kind_for(0, params) == "flat"
    assert ann.kind_for(49_999, params) == "flat"
    assert ann.kind_for(50_000, params) == "ivf_sq8"
    assert ann.kind_for(50_000, ann.AnnParams(auto_large_kind="hnsw", auto_flat_below=50_000)) == "hnsw"


def test_an_explicit_kind_holds_at_every_size_except_ivf_too_small_to_train() -> None:
    assert ann.kind_for(5, ann.AnnParams(kind="hnsw")) == "hnsw"
    assert ann.kind_for(ann.IVF_MIN_VECTORS - 1, ann.AnnParams(kind="ivf_pq")) == "flat"
    assert ann.kind_for(ann.IVF_MIN_VECTORS, ann.AnnParams(kind="ivf_sq8")) == "ivf_sq8"
    assert ann.kind_for(10**9, ann.AnnParams(kind="flat")) == "flat"


def test_nlist_follows_size_and_never_starves_a_list() -> None:
    assert ann.nlist_for(1_000_000, ann.AnnParams()) == 4000
    assert ann.nlist_for(10_000, ann.AnnParams()) == 10_000 // ann.MIN_TRAIN_PER_LIST
    assert ann.nlist_for(1_000_000, ann.AnnParams(ivf_nlist=1024)) == 1024


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "annoy"),
        ("auto_large_kind", "auto"),
        ("hnsw_m", 0),
        ("ivf_nprobe", -1),
        ("ivf_train_per_list", 8),
    ],
)
def test_bad_params_name_the_setting(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"index.ann.{field}"):
        ann.AnnParams(**{field: value})  # type: ignore[arg-type]


def test_build_refuses_what_would_break_cosine_or_ids() -> None:
    x = _clustered(10, seed=3)
    with pytest.raises(ValueError, match="L2-normalised"):
        ann.build(x * 2, np.arange(10), ann.AnnParams())
    with pytest.raises(ValueError, match="unique"):
        ann.build(x, np.zeros(10, dtype=np.int64), ann.AnnParams())
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        ann.build(x, np.arange(9), ann.AnnParams())


# --- build, files, what an index holds --------------------------------------------------------------


@pytest.mark.parametrize("kind", FAST_KINDS)
@pytest.mark.parametrize("mmap", [True, False])
def test_round_trip_through_a_file_searches_the_same(
    kind: str, mmap: bool, indexes: dict[str, faiss.Index], data: tuple, tmp_path: Path
) -> None:
    _, ids, queries = data
    built = indexes[kind]
    path = tmp_path / f"{kind}.faiss"
    ann.write(built, path)
    opened = ann.read(path, mmap=mmap)
    assert ann.kind_of(opened) == kind
    assert ann.size(opened) == N
    np.testing.assert_array_equal(ann.ids_of(opened), ids)
    before = ann.search(built, queries[:20], K)
    after = ann.search(opened, queries[:20], K)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], rtol=1e-6)


_MEMORY_PROBE = """
import sys
import numpy as np
from rag.index import ann

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return [int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile")]

anon, file = rss()
index = ann.read(sys.argv[1], mmap=sys.argv[2] == "1")
ann.search(index, ann.reconstruct(index, ann.ids_of(index)[:50]), 10)  # touch the pages
index.reconstruct_batch(ann.ids_of(index))  # every stored vector: every page of the file
after_anon, after_file = rss()
print(after_anon - anon, after_file - file)
"""


def _memory_growth(path: Path, mmap: bool) -> tuple[float, float]:
    """(private, file-backed) resident MiB that opening and reading ``path`` adds, measured in a
    fresh process so freed memory of this one cannot hide it."""
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(path), "1" if mmap else "0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("kind", FAST_KINDS)
def test_mmap_keeps_the_large_arrays_out_of_private_memory(
    kind: str, indexes: dict[str, faiss.Index], tmp_path: Path
) -> None:
    """Read without mmap, the file's arrays are copied into private memory; mapped, they are
    the file's pages (shared between processes): private memory grows by the id maps only
    (the reconstructed copy the probe makes is private either way, hence the margins)."""
    path = tmp_path / f"{kind}.faiss"
    ann.write(indexes[kind], path)
    file_mb = path.stat().st_size / 2**20
    copied = _memory_growth(path, mmap=False)
    mapped = _memory_growth(path, mmap=True)
    assert copied[0] > mapped[0] + 0.6 * file_mb, (copied, mapped, file_mb)
    assert mapped[1] > 0.6 * file_mb, (copied, mapped, file_mb)


@pytest.mark.parametrize("kind", FAST_KINDS)
def test_reconstruct_gives_the_stored_vectors(
    kind: str, indexes: dict[str, faiss.Index], data: tuple
) -> None:
    x, ids, _ = data
    rows = np.array([0, 5, N - 1])
    got = ann.reconstruct(indexes[kind], ids[rows])
    tolerance = 0.0 if kind in ("flat", "hnsw") else 0.01  # 8-bit codes: decoded, not exact
    np.testing.assert_allclose(got, x[rows], atol=tolerance)
    with pytest.raises(KeyError):
        ann.reconstruct(indexes[kind], np.array([ids[0], 1]))  # 1 is no id (ids are 11 + 3i)


def test_ivf_builds_are_deterministic_given_the_seed(data: tuple) -> None:
    x, ids, _ = data
    params = ann.AnnParams(kind="ivf_sq8", seed=7)
    first = faiss.serialize_index(ann.build(x[:12_000], ids[:12_000], params))
    second = faiss.serialize_index(ann.build(x[:12_000], ids[:12_000], params))
    assert np.array_equal(first, second)


# --- search ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAST_KINDS)
def test_recall_at_default_params(
    kind: str, indexes: dict[str, faiss.Index], data: tuple, exact: np.ndarray
) -> None:
    _, found = ann.search(indexes[kind], data[2], K)
    assert _recall(found, exact) >= RECALL_FLOOR[kind]


@pytest.mark.slow
def test_ivf_pq_builds_reads_and_reaches_its_floor(data: tuple, exact: np.ndarray, tmp_path: Path) -> None:
    x, ids, queries = data
    index = ann.build(x, ids, ann.AnnParams(kind="ivf_pq"))
    assert ann.kind_of(index) == "ivf_pq"
    ann.write(index, tmp_path / "pq.faiss")
    for mmap in (True, False):
        opened = ann.read(tmp_path / "pq.faiss", mmap=mmap)
        _, found = ann.search(opened, queries, K)
        assert _recall(found, exact) >= RECALL_FLOOR["ivf_pq"]
    decoded = ann.reconstruct(index, ids[:50])
    assert float(np.min(np.einsum("ij,ij->i", decoded, x[:50]))) > 0.8  # product codes: near, not exact
    small = ann.search(index, queries[:5], K, allowed=ids[:500])[1]  # the exact path
    assert np.isin(small, ids[:500]).all()


def test_a_single_query_and_short_results(indexes: dict[str, faiss.Index], data: tuple) -> None:
    _, ids, queries = data
    scores, found = ann.search(indexes["flat"], queries[0], K)  # one row, 1-D
    assert scores.shape == found.shape == (1, K)
    scores, found = ann.search(indexes["hnsw"], queries[:2], K, allowed=ids[:3])
    assert (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert sorted(found[0, :3].tolist()) == ids[:3].tolist()
    empty = ann.search(indexes["ivf_sq8"], queries[:2], K, allowed=np.zeros(0, dtype=np.int64))
    assert (empty[1] == -1).all()


def test_allowed_ids_the_index_does_not_hold_are_ignored(
    indexes: dict[str, faiss.Index], data: tuple
) -> None:
    _, ids, queries = data
    allowed = np.concatenate([ids[:20], np.array([1, 2, 4])])  # 1, 2, 4: another segment's ids
    for kind in FAST_KINDS:
        found = ann.search(indexes[kind], queries[:3], K, allowed=allowed)[1]
        assert np.isin(found, ids[:20]).all()


def _exact_among(
    index: faiss.Index, queries: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among ``ids`` by the vectors the index stores (decoded for IVF)."""
    vectors = ann.reconstruct(index, ids)
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(FAST_KINDS),
    share=st.one_of(st.floats(0.0002, 0.01), st.floats(0.2, 0.6)),
    seed=st.integers(0, 2**31 - 1),
)
def test_allowed_gives_the_exact_top_k_among_allowed(
    kind: str, share: float, seed: int, indexes: dict[str, faiss.Index], data: tuple
) -> None:
    """A small filter (< exact_filter_below ids) is searched exactly: the result is exactly the
    exact top-k among the allowed ids, for every kind. A large one goes through the index with
    the selector: every id allowed, and (flat) exactly or (hnsw, ivf) nearly the exact top-k."""
    _, ids, queries = data
    rng = np.random.default_rng(seed)
    allowed = np.sort(rng.choice(ids, size=max(1, int(share * N)), replace=False))
    q = queries[rng.choice(QUERIES, 5, replace=False)]
    params = ann.AnnParams(exact_filter_below=1_000)
    scores, found = ann.search(indexes[kind], q, K, allowed=allowed, params=params)
    want_scores, want = _exact_among(indexes[kind], q, allowed, K)
    top = min(K, len(allowed))
    assert np.isin(found[:, :top], allowed).all()
    assert (found[:, top:] == -1).all()
    if kind == "flat" or (kind == "hnsw" and len(allowed) < params.exact_filter_below):
        np.testing.assert_allclose(scores[:, :top], want_scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(found[:, :top], want)
    elif len(allowed) < params.exact_filter_below:  # IVF: every list scanned, its own code scores
        np.testing.assert_allclose(scores[:, :top], want_scores, atol=1e-4)  # = decoded, to rounding
    else:
        assert _recall(found, want) >= 0.9


@pytest.mark.parametrize("kind", FAST_KINDS)
def test_excluded_never_appear_and_the_next_best_take_their_place(
    kind: str, indexes: dict[str, faiss.Index], data: tuple
) -> None:
    x, ids, queries = data
    index = indexes[kind]
    _, first = ann.search(index, queries[:20], K)
    dead = np.unique(first[:, :3])  # every query's three best are tombstoned
    _, found = ann.search(index, queries[:20], K, excluded=dead)
    assert not np.isin(found, dead).any()
    live = ids[~np.isin(ids, dead)]
    truth = _exact_ids(queries[:20], x[np.isin(ids, live)], live, K)
    assert _recall(found, truth) >= RECALL_FLOOR[kind]
    assert (found >= 0).all()  # the places are filled, not left empty


def test_allowed_and_excluded_together(indexes: dict[str, faiss.Index], data: tuple) -> None:
    _, ids, queries = data
    allowed = ids[::4]
    dead = allowed[::2]
    for below in (10, 100_000):  # through the selector, then through the exact path
        params = ann.AnnParams(exact_filter_below=below)
        for kind in FAST_KINDS:
            index = indexes[kind]
            _, found = ann.search(index, queries[:10], K, allowed=allowed, excluded=dead, params=params)
            assert np.isin(found, allowed).all() and not np.isin(found, dead).any()
