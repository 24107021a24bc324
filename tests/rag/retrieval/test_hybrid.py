"""The hybrid retriever with the real MiniLM embedder over a small corpus ingested by the real
pipeline: exact identifiers, both scores on every hit, filters before the top-k in every mode,
near-duplicate filtering, and the refusal gate's cosine on hits found by keywords alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.errors import UnsupportedModeError
from rag.index import keyword
from rag.index.faiss_store import FaissSqliteStore
from rag.index.filters import SearchFilter
from rag.index.reader import IndexReader
from rag.protocols import Embedder
from rag.retrieval import MODES
from rag.retrieval.hybrid import HybridRetriever
from rag.types import ScoredChunk

FAQ = "Backups are encrypted with the chacha20 cipher, and the encryption keys rotate every ninety days."
CORPUS = {
    "ops/writer.md": (
        "The ingest writer keeps chunk rows in memory before it writes them. The option "
        "zq_flush_window sets how many milliseconds the writer waits before it flushes a batch of "
        "rows to disk; the default is 250 milliseconds."
    ),
    # Near misses: the identifier's words without the identifier, a neighbouring error code.
    "ops/cache.md": (
        "When its write buffer is full the cache flushes it to disk; a short window of pending "
        "writes is kept in memory, and the flush interval is measured in milliseconds."
    ),
    "ops/catalog-codes.md": (
        "Catalog error codes start with QX. Code QX-7714 means that the catalog database is "
        "read-only; code QX-7715 means that the catalog database file is missing."
    ),
    "ops/relay.md": (
        "The relay daemon listens on TCP port 7341 and accepts connections only from hosts listed "
        "in relay.allow. A dropped connection is resumed by the relay daemon automatically."
    ),
    "ops/retention.md": (
        "Daily snapshots are kept for fourteen days and weekly snapshots for eight weeks. The prune "
        "command removes older snapshots every night at half past three."
    ),
    "dev/errors.md": (
        "Error code QX-7713 means that the catalog database is locked by another process. Wait for "
        "that process to finish, or remove the stale lock file by hand."
    ),
    "dev/build.md": (
        "Run the unit tests with make check. Each test runs in its own process, and compiler "
        "warnings are treated as errors in continuous integration."
    ),
    "dev/review.md": (
        "Every change goes through the review process: one approval from a maintainer, green "
        "continuous integration, and a changelog entry."
    ),
    "shared/one/faq.md": FAQ,
    "shared/two/faq.md": FAQ,
}
TEAMS = {"ops": "ops", "dev": "dev", "shared": "shared"}
QUERIES = [
    "zq_flush_window",
    "QX-7713",
    "which TCP port does the relay daemon listen on",
    "how long are daily snapshots kept",
    "which cipher encrypts backups",
    "the and of",  # no keyword term at all
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    root = tmp_path_factory.mktemp("hybrid")
    docs = root / "docs"
    metadata = {}
    for rel, text in CORPUS.items():
        path = docs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        metadata[path.as_posix()] = {"team": TEAMS[rel.split("/")[0]]}
    settings = load_settings(index_dir=root / "index", **{"ingest.file_timeout_s": 0})
    summary = ingest([docs], settings, embedder, metadata=metadata)
    assert summary.failed == 0 and summary.added == len(CORPUS), summary
    return settings


def retriever(settings: Settings, embedder: Embedder, **retrieval: object) -> HybridRetriever:
    tuned = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update=retrieval)})
    return HybridRetriever(tuned, embedder, FaissSqliteStore(tuned))


def name(hit: ScoredChunk) -> str:
    return "/".join(Path(hit.chunk.source).parts[-2:])


@pytest.mark.parametrize(
    ("query", "source"), [("zq_flush_window", "ops/writer.md"), ("QX-7713", "dev/errors.md")]
)
@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_an_exact_identifier_is_ranked_first(
    corpus: Settings, embedder: Embedder, query: str, source: str, mode: str
) -> None:
    """The near misses share the identifier's parts (and for QX-7713 MiniLM ranks the
    neighbouring code's chunk first), but only one chunk has the identifier itself."""
    hits = retriever(corpus, embedder).retrieve(query, 4, mode=mode).hits
    assert name(hits[0]) == source, [(name(h), h.score) for h in hits]
    assert hits[0].keyword_score > max(h.keyword_score for h in hits[1:])


@pytest.mark.parametrize("fusion", ["convex", "rrf"])
@pytest.mark.parametrize("mode", MODES)
def test_every_hit_has_both_scores_and_a_mode_score(
    corpus: Settings, embedder: Embedder, mode: str, fusion: str
) -> None:
    r = retriever(corpus, embedder, fusion=fusion)
    for query in QUERIES:
        result = r.retrieve(query, 10, mode=mode)
        assert result.index_version == IndexReader.open(corpus.index_dir).version
        hits = result.hits
        if mode != "keyword" or keyword.match_expression(query):
            assert hits, query
        for h in hits:
            assert h.dense_score is not None and h.keyword_score is not None, (query, h)
            assert -1.0 <= h.dense_score <= 1.0 and h.keyword_score >= 0.0
            if mode == "dense":
                assert h.score == h.dense_score
            elif mode == "keyword":
                assert h.score == h.keyword_score > 0.0
            else:
                assert 0.0 <= h.score <= 1.0
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_filters_apply_before_the_top_k_in_every_mode(
    corpus: Settings, embedder: Embedder, mode: str
) -> None:
    """An ops question restricted to dev documents still gets k dev hits (here every dev chunk
    shares "process" with the query), not the dev share of an unfiltered top k."""
    query = "relay daemon process connections on port 7341"
    r = retriever(corpus, embedder)
    unfiltered = r.retrieve(query, 3, mode=mode).hits
    assert name(unfiltered[0]) == "ops/relay.md"
    dev = r.retrieve(query, 3, SearchFilter(metadata={"team": "dev"}), mode=mode).hits
    assert len(dev) == 3 and all(h.metadata["team"] == "dev" for h in dev)
    assert {name(h) for h in dev} == {"dev/errors.md", "dev/build.md", "dev/review.md"}
    prefix = r.retrieve(query, 3, SearchFilter(source_prefix="nowhere/"), mode=mode).hits
    assert prefix == []


def test_an_unknown_mode_is_refused(corpus: Settings, embedder: Embedder) -> None:
    with pytest.raises(UnsupportedModeError, match="dense, keyword, hybrid"):
        retriever(corpus, embedder).retrieve("relay", 3, mode="fuzzy")


@pytest.mark.parametrize("mode", MODES)
def test_the_same_text_in_two_files_takes_one_slot(corpus: Settings, embedder: Embedder, mode: str) -> None:
    query = "which cipher encrypts the backups and how often do keys rotate"
    default = retriever(corpus, embedder).retrieve(query, 3, mode=mode).hits
    assert "faq.md" in name(default[0])
    assert sum(h.chunk.text == FAQ for h in default) == 1
    off = retriever(corpus, embedder, duplicate_similarity=1.01).retrieve(query, 3, mode=mode).hits
    assert [h.chunk.text == FAQ for h in off[:2]] == [True, True]
    assert {name(h) for h in off[:2]} == {"one/faq.md", "two/faq.md"}


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_a_hit_found_by_keywords_alone_carries_its_true_cosine(
    corpus: Settings, embedder: Embedder, mode: str
) -> None:
    """The refusal gate reads dense_score. For a chunk that dense search did not bring in (a
    pool of top_k candidates per method) it must be the cosine of the query and the chunk's
    stored vector, not a BM25 score, a fused score or a default."""
    query, k = "process", 3
    q = embedder.embed_query(query)
    reader = IndexReader.open(corpus.index_dir)
    cosine = {h.chunk.id: h.score for h in reader.search(q, 100)}  # FAISS, over every chunk
    dense_pool = {h.chunk.id for h in reader.search(q, k)} if mode == "hybrid" else set()
    hits = retriever(corpus, embedder, candidates=1).retrieve(query, k, mode=mode).hits
    keyword_only = [h for h in hits if h.chunk.id not in dense_pool]
    assert keyword_only, "every hit came from dense search; nothing was tested"
    for h in hits:
        vector = reader.vectors([int(h.chunk.id)])[0]
        assert h.dense_score == pytest.approx(float(q @ vector), abs=1e-6)
        assert h.dense_score == pytest.approx(cosine[h.chunk.id], abs=1e-5)
    assert all(h.keyword_score is not None and 0.0 < h.keyword_score != h.dense_score for h in keyword_only)
    reader.close()


@pytest.mark.parametrize("mode", MODES)
def test_mmr_and_a_top_k_beyond_the_corpus(corpus: Settings, embedder: Embedder, mode: str) -> None:
    """MMR on: still distinct hits with both scores; a top_k larger than the corpus returns every
    chunk that qualifies, the duplicate FAQ once."""
    reader = IndexReader.open(corpus.index_dir)
    every = reader.size
    r = retriever(corpus, embedder, mmr_lambda=0.5)
    hits = r.retrieve("relay daemon process", 100, mode=mode).hits
    ids = [h.chunk.id for h in hits]
    assert len(ids) == len(set(ids)) and all(h.dense_score is not None for h in hits)
    if mode != "keyword":
        assert len(hits) == every - 1  # all but the second copy of the FAQ
    else:
        terms = set(keyword.analyze("relay daemon process"))
        assert len(hits) == sum(bool(terms & set(keyword.analyze(t))) for t in CORPUS.values())
    reader.close()
