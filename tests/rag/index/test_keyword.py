"""Keyword (BM25) search: the analyzer, FTS5 query safety, filters before the top-k, and an index
written before keyword search (no terms until its next commit adds them)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.errors import KeywordIndexMissingError
from rag.index import keyword, layout
from rag.index.faiss_store import FaissSqliteStore
from rag.index.filters import SearchFilter
from rag.index.manifest import Manifest
from rag.index.reader import IndexReader
from rag.index.writer import IndexWriter
from rag.retrieval.hybrid import HybridRetriever
from tests.rag.index.hash_embedder import HashEmbedder

FTS5_SYNTAX = [
    '"',
    '"unbalanced quote',
    'say "hello',
    "relay*",
    "*",
    "NEAR(relay port)",
    "NEAR",
    "relay NEAR/2 port",
    "-relay",
    "relay - port",
    "relay:port",
    "terms:relay",
    ":",
    "(relay",
    "relay)",
    "()",
    "relay AND",
    "OR",
    "NOT relay",
    "AND OR NOT",
    "^relay",
    "{terms} : relay",
    "relay + port",
    "'",
    "''",
    "\\",
    "relay\x00port",
    "-- ; DROP TABLE chunk_terms",
]


def memory_index(texts: dict[int, str]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    keyword.create(conn)
    keyword.add(conn, texts.items())
    return conn


# -- the analyzer ----------------------------------------------------------------------------


def test_stop_words_are_dropped_and_words_stemmed() -> None:
    assert keyword.analyze("The snapshots are stored in the catalog") == ["snapshot", "store", "catalog"]
    assert keyword.analyze("Retention policies: running connections") == [
        "retent",
        "polici",
        "run",
        "connect",
    ]
    assert keyword.analyze("Connected, connecting, connection") == ["connect"] * 3


def test_case_is_folded() -> None:
    assert keyword.analyze("RELAY Relay relay") == ["relay"] * 3


@pytest.mark.parametrize(
    ("identifier", "parts", "joined"),
    [
        ("max_tokens", ["max", "token"], "maxtokens"),
        ("/v1/query", ["v1", "queri"], "v1query"),
        ("rag-service", ["rag", "servic"], "ragservice"),
        ("zephyr.conf", ["zephyr", "conf"], "zephyrconf"),
        ("RAG_RETRIEVAL__TOP_K", ["rag", "retriev", "top", "k"], "ragretrievaltopk"),
    ],
)
def test_compound_identifiers_are_indexed_as_parts_and_joined(
    identifier: str, parts: list[str], joined: str
) -> None:
    terms = keyword.analyze(f"set {identifier} now")
    assert terms == ["set", *parts, joined, "now"]


@pytest.mark.parametrize("number", ["3.0", "2026-12-02", "10.0.0.1", "1,000"])
def test_numbers_with_inner_punctuation_are_not_joined(number: str) -> None:
    """Joined, FHS 3.0 would be the term "30" and match any text with the number 30."""
    assert keyword.analyze(f"version {number}") == ["version", *re.findall(r"\d+", number)]


def test_single_characters_and_digits_are_words() -> None:
    """The sample corpus answers "GID 5": a one-character word is a term like any other."""
    assert keyword.analyze("the tty group has GID 5") == ["tti", "group", "gid", "5"]
    assert keyword.analyze("port 7 x") == ["port", "7", "x"]


def test_exact_identifier_outranks_its_parts_elsewhere() -> None:
    conn = memory_index(
        {
            1: "The token budget has a max and a min; tokens are counted per request.",
            2: "Set max_tokens in the request to limit the answer.",
        }
    )
    assert next(cid for cid, _ in keyword.search(conn, "max_tokens", 2)) == 2


@pytest.mark.parametrize("query", ["", "the and of", "   ", "... ,;!?", "a an the is it", "__", "- / :"])
def test_a_query_without_words_searches_nothing(query: str) -> None:
    conn = memory_index({1: "the relay and the port", 2: "of it is"})
    assert keyword.match_expression(query) is None
    assert keyword.search(conn, query, 5) == []
    assert keyword.scores(conn, query, [1, 2]) == {1: 0.0, 2: 0.0}


@pytest.mark.parametrize("query", FTS5_SYNTAX)
def test_fts5_syntax_in_a_query_never_raises(query: str) -> None:
    conn = memory_index({1: "relay port 7341", 2: "near the relay", 3: "terms and hello"})
    hits = keyword.search(conn, query, 5)
    if "relay" in query.lower():
        assert 1 in {cid for cid, _ in hits}  # read as words, not as operators
    keyword.scores(conn, query, [1, 2, 3])


@given(st.text(alphabet=st.sampled_from(list("\"*():-^{}+'\\/ .,_NEARORANDTrelay port\x00é日")), max_size=40))
def test_any_query_text_never_raises(query: str) -> None:
    conn = memory_index({1: "relay port 7341", 2: "near the relay"})
    for cid, score in keyword.search(conn, query, 5):
        assert cid in (1, 2) and score > 0.0


def test_scores_are_positive_best_first_and_zero_without_a_common_term() -> None:
    conn = memory_index({1: "relay relay relay port", 2: "relay and the catalog", 3: "pruning at night"})
    hits = keyword.search(conn, "relay port", 3)
    assert [cid for cid, _ in hits] == [1, 2]
    assert hits[0][1] > hits[1][1] > 0.0
    assert keyword.scores(conn, "relay port", [3, 2]) == {3: 0.0, 2: hits[1][1]}


# -- through the index -----------------------------------------------------------------------


def _settings(index_dir: Path, **extra: object) -> Settings:
    return load_settings(index_dir=index_dir, **{"ingest.file_timeout_s": 0, **extra})


@pytest.fixture
def team_index(tmp_path: Path) -> tuple[Path, Settings]:
    """Twelve "ops" documents that match "relay firewall" far better than four "dev" ones."""
    docs = tmp_path / "docs"
    metadata = {}
    for team, n, text in (
        ("ops", 12, "relay relay firewall relay port {i}"),
        ("dev", 4, "compiler warnings block the relay build number {i} and unit tests"),
    ):
        (docs / team).mkdir(parents=True)
        for i in range(n):
            path = docs / team / f"{team}{i}.md"
            path.write_text(text.format(i=i), encoding="utf-8")
            metadata[path.as_posix()] = {"team": team, "n": i}
    settings = _settings(tmp_path / "index")
    summary = ingest([docs], settings, HashEmbedder(), metadata=metadata)
    assert summary.failed == 0 and summary.added == 16
    return docs, settings


def test_keyword_filters_apply_before_the_top_k(team_index: tuple[Path, Settings]) -> None:
    docs, settings = team_index
    reader = IndexReader.open(settings.index_dir)
    assert reader.has_keyword_index
    assert all(h.metadata["team"] == "ops" for h in reader.keyword_search("relay firewall", 3))
    dev = reader.keyword_search("relay firewall", 3, SearchFilter(metadata={"team": "dev"}))
    assert len(dev) == 3 and all(h.metadata["team"] == "dev" for h in dev)
    assert [h.score for h in dev] == sorted((h.score for h in dev), reverse=True)
    assert all(h.keyword_score == h.score > 0.0 and h.dense_score is None for h in dev)
    assert len(reader.keyword_search("relay", 10, SearchFilter(metadata={"team": "dev"}))) == 4
    both = SearchFilter(metadata={"team": "ops", "n": [1, 2]})
    assert sorted(h.metadata["n"] for h in reader.keyword_search("relay", 5, both)) == [1, 2]
    prefix = (docs / "dev").resolve().as_posix()
    assert {
        h.chunk.source.rsplit("/", 1)[-1]
        for h in reader.keyword_search("relay", 10, SearchFilter(source_prefix=prefix))
    } == {f"dev{i}.md" for i in range(4)}
    assert reader.keyword_search("relay", 5, SearchFilter(metadata={"team": "nobody"})) == []
    assert (
        reader.keyword_search("firewall", 5, SearchFilter(metadata={"team": "dev"})) == []
    )  # no dev doc has it
    assert reader.keyword_search("the and of", 5) == []  # stop words only: nothing, no error
    for query in FTS5_SYNTAX:
        reader.keyword_search(query, 5, SearchFilter(metadata={"team": "dev"}))


# -- an index written before keyword search ---------------------------------------------------


def _make_legacy(index_dir: Path, how: str) -> Path:
    """Turn the committed version into what an older release wrote (or one analysed otherwise);
    returns its manifest's path."""
    path = layout.current_manifest_path(index_dir)
    manifest = Manifest.read(path)
    conn = sqlite3.connect(index_dir / layout.STORE)
    if how == "no terms":
        conn.execute(f"DROP TABLE {keyword.TABLE}")
        manifest.keyword_analyzer = None
    else:  # terms analysed by other rules: useless for today's query terms
        conn.execute(f"UPDATE {keyword.TABLE} SET terms = 'obsolete'")
        manifest.keyword_analyzer = "some-older-analyzer"
    conn.commit()
    conn.close()
    manifest.write(path)
    return path


@pytest.mark.parametrize("how", ["no terms", "other analyzer"])
def test_an_index_from_before_keyword_search(
    team_index: tuple[Path, Settings], tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    docs, settings = team_index
    legacy_dir = tmp_path / "legacy"
    shutil.copytree(settings.index_dir, legacy_dir)
    old_version = _make_legacy(legacy_dir, how)
    legacy = _settings(legacy_dir)

    reader = IndexReader.open(legacy_dir)
    assert not reader.has_keyword_index
    reader.check_consistent()  # nothing to compare on the keyword side, the rest agrees
    with pytest.raises(KeywordIndexMissingError, match=r"rag ingest"):
        reader.keyword_search("relay", 3)
    with pytest.raises(KeywordIndexMissingError, match=r"rag ingest"):
        reader.keyword_scores("relay", [0, 1])

    embedder = HashEmbedder()
    retriever = HybridRetriever(legacy, embedder, FaissSqliteStore(legacy))
    with pytest.raises(KeywordIndexMissingError, match=r"rag ingest"):
        retriever.retrieve("relay firewall", 3, mode="keyword")
    cosine = {h.chunk.id: h.score for h in reader.search(embedder.embed_query("relay firewall"), 100)}
    with caplog.at_level("WARNING", logger="rag.retrieval"):
        hybrid = retriever.retrieve("relay firewall", 3, mode="hybrid").hits
    assert "no keyword terms" in caplog.text
    # Dense search only: the best three cosines (compared as scores: equal ones may swap).
    assert [h.score for h in hybrid] == sorted(cosine.values(), reverse=True)[:3]
    assert all(h.score == cosine[h.chunk.id] for h in hybrid)
    assert all(h.score == h.dense_score and h.keyword_score is None for h in hybrid)
    reader.close()

    # The next commit adds the terms even though no document changed.
    summary = ingest([docs], legacy, embedder)
    assert summary.added == summary.updated == summary.deleted == 0
    assert summary.index_version == reader.version + 1
    upgraded = IndexReader.open(legacy_dir)
    assert upgraded.has_keyword_index and upgraded.manifest.keyword_analyzer == keyword.ANALYZER
    upgraded.check_consistent()
    dev = upgraded.keyword_search("relay", 10, SearchFilter(metadata={"team": "dev"}))
    assert len(dev) == 4 and upgraded.keyword_search("obsolete", 5) == []
    hits = (
        HybridRetriever(legacy, embedder, FaissSqliteStore(legacy)).retrieve("relay", 3, mode="keyword").hits
    )
    assert len(hits) == 3 and all(h.keyword_score and h.keyword_score > 0 for h in hits)
    assert ingest([docs], legacy, embedder).index_version is None  # upgraded once, then no-op
    # The version it was upgraded from is untouched (a reader may still be answering from it).
    assert not IndexReader(legacy_dir, old_version).has_keyword_index


def test_a_delete_only_writer_also_adds_the_terms(team_index: tuple[Path, Settings], tmp_path: Path) -> None:
    _, settings = team_index
    legacy_dir = tmp_path / "legacy"
    shutil.copytree(settings.index_dir, legacy_dir)
    _make_legacy(legacy_dir, "no terms")
    with IndexWriter.for_existing(legacy_dir) as writer:
        assert not writer.delete("/no/such/document.md")
        assert writer.changed
        writer.commit()
    reader = IndexReader.open(legacy_dir)
    assert reader.has_keyword_index
    reader.check_consistent()
    assert len(reader.keyword_search("relay", 100)) == 16
