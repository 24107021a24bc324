"""Index bookkeeping under random sequences of add / update / delete / re-ingest.

After every step, the SQLite store, the FAISS ids, the keyword (FTS5) terms, the manifest and a
plain Python model of the corpus (file name -> text) must agree, every chunk must slice its
document's text, only chunk texts new to the index may be embedded, and no search may return a
deleted chunk. Keyword search for a word of the live texts must return exactly the live chunks
that contain it (by a brute-force scan of the chunks with its own tokenising and stemming).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
import Stemmer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ingest.loaders import default_document_id
from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.errors import IndexNotFoundError
from rag.index import keyword, layout
from rag.index.manifest import Manifest
from rag.index.reader import IndexReader
from rag.index.sqlite_store import visible
from rag.index.writer import IndexWriter
from rag.protocols import Embedder
from rag.types import content_hash
from tests.rag.index.hash_embedder import HashEmbedder

# Paragraphs are shared between documents so identical chunks (embedded once) are common.
PARAGRAPHS = [
    "Zephyr stores snapshots in the var lib folder and keeps a catalog of every stored file.",
    "Retention keeps daily snapshots for fourteen days and weekly ones for eight weeks.",
    "The relay daemon listens on port 7341 and accepts hosts listed in relay allow.",
    "Restores write files to the srv restore folder unless a target is given.",
    "Pruning runs every night at half past three and removes expired snapshots.",
    "Logs go to var log zephyr and rotate weekly with four copies kept around.",
    "Set max_tokens to 5 in relay.conf, then call /v1/query on the rag-service host.",
]
NAMES = [f"doc{i}.txt" for i in range(5)]
texts = st.lists(st.sampled_from(PARAGRAPHS), min_size=1, max_size=4).map("\n\n".join)
WORDS = re.compile(r"[^\W_]+")  # letters and digits; the model's own idea of a word
VOCABULARY = sorted({w for p in PARAGRAPHS for w in WORDS.findall(p)})
STEMMER = Stemmer.Stemmer("english")
# Checked after every step, beside the rule's random word: a one-character word, a number, a part
# of a compound identifier, a word whose stem ("snapshot") differs from it, and a stop word.
PROBE_WORDS = ("5", "7341", "v1", "snapshots", "the")


def small_settings(index_dir: Path) -> Settings:
    # file_timeout_s=0: parse in-process; the parse worker has its own tests and would only add
    # process start-up to hundreds of tiny ingests here.
    return load_settings(
        index_dir=index_dir,
        # merge_segments 2: commits merge small segments often, so merges meet every other step.
        **{
            "chunking.chunk_tokens": 24,
            "chunking.overlap_tokens": 4,
            "ingest.file_timeout_s": 0,
            "index.merge_segments": 2,
        },
    )


def stored_chunks(index_dir: Path) -> list[tuple[int, str, int, int, str, str]]:
    """The chunk rows the live version sees (the store also holds other versions' rows)."""
    version = Manifest.read(layout.current_manifest_path(index_dir)).version
    with sqlite3.connect(f"file:{index_dir / layout.STORE}?mode=ro", uri=True) as conn:
        return conn.execute(
            f'SELECT id, document_id, start, "end", text, hash FROM chunks WHERE {visible(version)}'
        ).fetchall()


def brute_force_matches(index_dir: Path, word: str) -> set[int]:
    """Ids of the live chunks that contain ``word`` (the same Snowball stem; stop words none)."""
    if word.lower() in keyword.STOPWORDS:
        return set()
    stem = STEMMER.stemWord(word.lower())
    return {
        cid
        for cid, *_, text, _ in stored_chunks(index_dir)
        if stem in {STEMMER.stemWord(w) for w in WORDS.findall(text.lower()) if w not in keyword.STOPWORDS}
    }


def check_keyword_search(index_dir: Path, word: str, k: int, removed: set[int]) -> None:
    """Keyword search for ``word`` finds exactly the live chunks holding it; its top-k is the
    best k of them."""
    expected = brute_force_matches(index_dir, word)
    reader = IndexReader.open(index_dir)
    try:
        every = reader.keyword_search(word, 1000)
        found = {h.chunk.id for h in every}
        assert found == expected, (word, sorted(found - expected), sorted(expected - found))
        assert found.isdisjoint(removed)
        assert all(h.keyword_score == h.score > 0.0 for h in every)
        top = reader.keyword_search(word, k)
        assert len(top) == min(k, len(expected))
        assert [h.score for h in top] == sorted((h.score for h in every), reverse=True)[:k]
        scores = reader.keyword_scores(word, sorted(reader.chunk_ids()))
        assert {cid for cid, s in scores.items() if s > 0.0} == expected
    finally:
        reader.close()


def check_index(index_dir: Path, model: dict[Path, str], embedder: Embedder, removed: set[int]) -> None:
    """The index agrees with ``model`` (path -> text); chunks in ``removed`` are never found."""
    try:
        reader = IndexReader.open(index_dir)
    except IndexNotFoundError:
        assert not model
        return
    assert reader.has_keyword_index
    reader.check_consistent()  # chunk rows == FAISS ids == keyword rows, and the manifest
    docs = {d["id"]: d for d in reader.documents()}
    expected = {default_document_id(p): text for p, text in model.items()}
    assert set(docs) == set(expected)
    for doc_id, text in expected.items():
        assert docs[doc_id]["hash"] == content_hash(text)
    live = set()
    for cid, doc_id, start, end, text, digest in stored_chunks(index_dir):
        assert text == expected[doc_id][start:end] and digest == content_hash(text)
        live.add(cid)
    assert live.isdisjoint(removed)
    for word in PROBE_WORDS:
        check_keyword_search(index_dir, word, 2, removed)
    ids = sorted(live)
    vectors = reader.vectors(ids)
    for query in [*PARAGRAPHS, *expected.values()]:
        q = embedder.embed_query(query)
        hits = reader.search(q, top_k=10)
        assert all(hit.chunk.id in live and hit.chunk.document_id in expected for hit in hits)
        # Exactly the exact top-10 over the live vectors, whatever segments and tombstones hold
        # them (compared as scores: equal vectors may come in either order).
        exact = sorted((float(v @ q) for v in vectors), reverse=True)[:10]
        assert [h.score for h in hits] == pytest.approx(exact, abs=1e-5)
    reader.close()


class Bookkeeping(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="bookkeeping-"))
        self.docs = self.tmp / "docs"
        self.docs.mkdir()
        self.settings = small_settings(self.tmp / "index")
        self.embedder = HashEmbedder()
        self.model: dict[Path, str] = {}
        self.removed: set[int] = set()  # ids of chunks that were in some version and are gone

    @initialize()
    def no_index_yet(self) -> None:
        assert not (self.tmp / "index").exists()

    def _chunk_state(self) -> tuple[set[int], set[str]]:
        try:
            rows = stored_chunks(self.settings.index_dir)
        except IndexNotFoundError:
            return set(), set()
        return {r[0] for r in rows}, {r[5] for r in rows}

    def _stored_hashes(self) -> set[str]:
        """Hashes of every stored chunk row: the live version's and recently deleted ones, whose
        vectors are still in their segments (reused rather than embedded again)."""
        path = self.settings.index_dir / layout.STORE
        if not path.exists():
            return set()
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return {r[0] for r in conn.execute("SELECT hash FROM chunks")}

    def _ingest(self, paths: list[Path], sync: bool = False) -> None:
        ids_before, _ = self._chunk_state()
        stored_before = self._stored_hashes()
        summary = ingest(paths, self.settings, self.embedder, sync=sync)
        assert summary.failed == 0, summary.errors
        ids_after, hashes_after = self._chunk_state()
        # Identical chunk texts are embedded once: only hashes new to the store were embedded.
        assert summary.chunks_embedded == len(hashes_after - stored_before)
        self.removed |= ids_before - ids_after

    @rule(name=st.sampled_from(NAMES), text=texts)
    def add_or_update(self, name: str, text: str) -> None:
        path = self.docs / name
        path.write_text(text, encoding="utf-8")
        self.model[path] = text
        self._ingest([path])

    @rule(name=st.sampled_from(NAMES))
    def delete_with_writer(self, name: str) -> None:
        path = self.docs / name
        try:
            writer = IndexWriter.for_existing(self.settings.index_dir)
        except IndexNotFoundError:
            return
        ids_before, _ = self._chunk_state()
        with writer:
            assert writer.delete(default_document_id(path)) == (path in self.model)
            if writer.changed:
                writer.commit()
        path.unlink(missing_ok=True)
        self.model.pop(path, None)
        self.removed |= ids_before - self._chunk_state()[0]

    @rule(name=st.sampled_from(NAMES))
    def delete_file_then_sync(self, name: str) -> None:
        (self.docs / name).unlink(missing_ok=True)
        self.model.pop(self.docs / name, None)
        self._ingest([self.docs], sync=True)

    @rule()
    def reingest_unchanged_folder(self) -> None:
        summary = ingest([self.docs], self.settings, self.embedder)
        assert summary.chunks_embedded == 0 and summary.added == summary.updated == 0
        assert summary.unchanged == len(self.model) and summary.index_version is None

    @rule()
    def compact(self) -> None:
        try:
            writer = IndexWriter.for_existing(self.settings.index_dir)
        except IndexNotFoundError:
            return
        with writer:
            manifest = writer.compact()
        assert len(manifest.segments) <= 1 and manifest.tombstones == 0

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def keyword_search_finds_exactly_the_live_chunks(self, data: st.DataObject) -> None:
        live = sorted({w for text in self.model.values() for w in WORDS.findall(text)})
        word = data.draw(st.sampled_from(live), label="live word")
        check_keyword_search(
            self.settings.index_dir, word, data.draw(st.integers(1, 4), label="k"), self.removed
        )
        gone = sorted(set(VOCABULARY) - set(live))
        if gone:  # a word only deleted or replaced texts had (unless a live word shares its stem)
            dead = data.draw(st.sampled_from(gone), label="dead word")
            check_keyword_search(self.settings.index_dir, dead, 3, self.removed)

    @invariant()
    def index_matches_model(self) -> None:
        check_index(self.settings.index_dir, self.model, self.embedder, self.removed)

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


Bookkeeping.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_bookkeeping_under_random_operations = Bookkeeping.TestCase


def test_bookkeeping_with_the_real_embedder(tmp_path: Path, embedder: Embedder) -> None:
    """The same invariants through a fixed sequence with MiniLM, plus what vectors mean: after
    an update the new text is found and the old text's chunks are gone."""
    settings_ = small_settings(tmp_path / "index")
    docs = tmp_path / "docs"
    docs.mkdir()
    model: dict[Path, str] = {}
    removed: set[int] = set()

    def step(paths: list[Path], sync: bool = False) -> None:
        exists = (settings_.index_dir / layout.CURRENT).exists()
        before = {r[0] for r in stored_chunks(settings_.index_dir)} if exists else set()
        ingest(paths, settings_, embedder, sync=sync)
        removed.update(before - {r[0] for r in stored_chunks(settings_.index_dir)})
        check_index(settings_.index_dir, model, embedder, removed)
        for word in ("stored", "chacha20", "Zephyr"):
            check_keyword_search(settings_.index_dir, word, 2, removed)

    for i, name in enumerate(NAMES[:3]):
        model[docs / name] = PARAGRAPHS[i] + "\n\n" + PARAGRAPHS[i + 1]
        (docs / name).write_text(model[docs / name])
    step([docs])
    update = "Encryption uses the cipher chacha20 with keys rotated every ninety days."
    model[docs / NAMES[0]] = update
    (docs / NAMES[0]).write_text(update)
    step([docs])
    reader = IndexReader.open(settings_.index_dir)
    top = reader.search(embedder.embed_query("which cipher encrypts backups?"), 1)[0]
    assert top.chunk.document_id == default_document_id(docs / NAMES[0]) and "chacha20" in top.chunk.text
    old = reader.search(embedder.embed_query(PARAGRAPHS[0]), 5)
    assert all(h.chunk.text != PARAGRAPHS[0] for h in old)  # only doc0 had it, and doc0 changed
    (docs / NAMES[1]).unlink()
    del model[docs / NAMES[1]]
    step([docs], sync=True)
    assert ingest([docs], settings_, embedder).chunks_embedded == 0
