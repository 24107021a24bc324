"""SIGKILL an ingest at every step of a commit (and at random moments): the index must still load,
be internally consistent, be exactly the old or exactly the new version, and accept the next
ingest, which clears what the killed writer left behind. "Consistent" includes the keyword side:
the FTS5 terms are rows of the same store.sqlite, so they must name exactly the chunks (and
vectors) of the surviving version, and a keyword query must find exactly its documents.

The killed process is the real CLI (`python -m cli ingest --sync`) with the hashing test
embedder (see hash_embedder.py for why). Deterministic kill points come from the writer's
RAG_TEST_CRASH_AT hook, which SIGKILLs the process at that exact step.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import Stemmer

from ingest.loaders import default_document_id
from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.errors import IndexNotFoundError, KeywordIndexMissingError
from rag.fsutil import FileLock
from rag.index import keyword, layout, segments
from rag.index.manifest import Manifest
from rag.index.reader import IndexReader
from rag.index.sqlite_store import visible
from rag.index.writer import BEFORE_SWAP, CRASH_ENV, CRASH_POINTS
from rag.types import content_hash
from tests.rag.index.hash_embedder import HashEmbedder

REPO = Path(__file__).resolve().parents[3]
BACKEND = "tests.rag.index.hash_embedder:HashEmbedder"

State = dict[str, str]  # document id -> content hash
TEXTS: dict[str, str] = {}  # content hash -> text, of every file this test wrote
WORDS = re.compile(r"[^\W_]+")
STEMMER = Stemmer.Stemmer("english")
PROBES = 30  # keyword queries per check


@pytest.fixture(autouse=True)
def _forget_texts() -> Iterator[None]:
    TEXTS.clear()
    yield
    TEXTS.clear()


def _settings(index_dir: Path) -> Settings:
    return load_settings(index_dir=index_dir, **{"embedding.backend": BACKEND})


def _write(docs: Path, files: dict[str, str]) -> State:
    """Make ``docs`` hold exactly ``files``; return the index state they should produce."""
    docs.mkdir(exist_ok=True)
    for old in docs.iterdir():
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (docs / name).write_text(text, encoding="utf-8")
        TEXTS[content_hash(text)] = text
    return {default_document_id(docs / name): content_hash(text) for name, text in files.items()}


def _text(topic: str, n: int = 3) -> str:
    return "\n\n".join(
        f"{topic} paragraph {i}: " + " ".join(f"{topic}{j}" for j in range(40)) for i in range(n)
    )


def _run_cli(docs: Path | None, index_dir: Path, crash_at: str | None = None) -> subprocess.Popen[bytes]:
    """`rag ingest DOCS --sync`, or with ``docs=None`` `rag compact`, as a child process."""
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "RAG_EMBEDDING__BACKEND": BACKEND,
    }
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    command = ["compact"] if docs is None else ["ingest", str(docs), "--sync"]
    cmd = [sys.executable, "-m", "cli", *command, "--index", str(index_dir), "--json"]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stems(text: str) -> set[str]:
    return {STEMMER.stemWord(w) for w in WORDS.findall(text.lower()) if w not in keyword.STOPWORDS}


def _check_keywords(reader: IndexReader, state: State) -> None:
    """Keyword search over this version finds exactly its documents and chunks: for "paragraph"
    (in every text) and for topic words of every text written, this version's or another's."""
    store = sqlite3.connect(f"file:{reader.root / layout.STORE}?mode=ro", uri=True)
    try:
        chunks = store.execute(
            f"SELECT id, document_id, text FROM chunks WHERE {visible(reader.version)}"
        ).fetchall()
    finally:
        store.close()
    texts = {doc_id: TEXTS[digest] for doc_id, digest in state.items()}
    topics = sorted({WORDS.findall(text)[0] for text in TEXTS.values()})
    probes = ["paragraph", *random.Random(len(topics)).sample(topics, min(PROBES, len(topics)))]
    for word in probes:
        stem = STEMMER.stemWord(word.lower())
        hits = reader.keyword_search(word, 100_000)
        assert {h.chunk.document_id for h in hits} == {
            d for d, text in texts.items() if stem in _stems(text)
        }, word
        assert {h.chunk.id for h in hits} == {cid for cid, _, text in chunks if stem in _stems(text)}, word
    assert {h.chunk.document_id for h in reader.keyword_search("paragraph", 100_000)} == set(state)


def _state_after_crash(index_dir: Path, *, keyword_terms: bool = True) -> State | None:
    """Open the index as a server would and check it; None when no version was ever committed.
    ``keyword_terms``: whether the surviving version must have keyword terms (False: it is an
    index from before keyword search)."""
    try:
        reader = IndexReader.open(index_dir)
    except IndexNotFoundError:
        return None
    reader.check_consistent()  # chunk rows == FAISS ids == keyword rows, and the manifest
    state = {d["id"]: d["hash"] for d in reader.documents()}
    live = reader.chunk_ids()
    embedder = HashEmbedder()
    for query in ("alpha paragraph 1", "delta3 delta4", "gamma"):
        for hit in reader.search(embedder.embed_query(query), 5):
            assert hit.chunk.id in live and hit.chunk.document_id in state
    assert reader.has_keyword_index is keyword_terms
    if keyword_terms:
        _check_keywords(reader, state)
    else:
        with pytest.raises(KeywordIndexMissingError):
            reader.keyword_search("paragraph", 5)
    reader.close()
    return state


def _recover_and_check(docs: Path, index_dir: Path, expected: State) -> None:
    """The next ingest takes over: it succeeds, ends in the expected state, leaves no debris."""
    summary = ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    assert summary.failed == 0, summary.errors
    assert _state_after_crash(index_dir) == expected
    _check_no_debris(index_dir)


def _check_no_debris(index_dir: Path) -> None:
    """Only the kept manifests, the segments they name, and rows no newer than the live version."""
    assert not [p for p in index_dir.iterdir() if p.name.endswith(".tmp")]
    current = layout.manifest_number(layout.current_manifest_path(index_dir))
    versions = [layout.manifest_number(p) for p in layout.manifest_paths(index_dir)]
    assert max(versions) == current and len(versions) <= 2, versions
    named = {s.number for p in layout.manifest_paths(index_dir) for s in Manifest.read(p).segments}
    on_disk = [segments.file_number(p) for p in segments.files(index_dir)]
    assert None not in on_disk, segments.files(index_dir)  # no temp file left in segments/
    assert set(on_disk) == named, (on_disk, named)
    with sqlite3.connect(f"file:{index_dir / layout.STORE}?mode=ro", uri=True) as store:
        newest = store.execute("SELECT max(added_in) FROM chunks").fetchone()[0]
        undone = store.execute("SELECT count(*) FROM chunks WHERE deleted_in > ?", (current,)).fetchone()[0]
    assert (newest or 0) <= current and undone == 0
    assert not layout.legacy_dirs(index_dir)


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[Path, Path, State, State]:
    """An index with two committed versions (so a third commit has one to prune), and the docs
    folder changed on disk: one file updated, one added, one deleted."""
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta"), "c.md": _text("gamma")})
    ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    old = _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta"), "c.md": _text("gamma", 4)})
    ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    new = _write(docs, {"a.md": _text("alpha", 5), "c.md": _text("gamma", 4), "d.md": _text("delta")})
    return docs, index_dir, old, new


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_at_each_commit_step_leaves_old_or_new_version(
    two_versions: tuple[Path, Path, State, State], point: str
) -> None:
    docs, index_dir, old, new = two_versions
    proc = _run_cli(docs, index_dir, crash_at=point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert _state_after_crash(index_dir) == (old if point in BEFORE_SWAP else new)
    _recover_and_check(docs, index_dir, new)


@pytest.mark.parametrize("point", ["after_db_commit", "after_manifest", "before_current"])
def test_sigkill_during_the_first_ingest_leaves_no_index_and_a_clean_retry(
    tmp_path: Path, point: str
) -> None:
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    new = _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta")})
    proc = _run_cli(docs, index_dir, crash_at=point)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert _state_after_crash(index_dir) is None
    _recover_and_check(docs, index_dir, new)


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    """Kills at times no hook chose, over an ingest big enough to be caught mid-way."""
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    files = {f"f{i:03d}.md": _text(f"topic{i}", 2) for i in range(150)}
    _write(docs, files)
    ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    rng = random.Random(20240611)
    outcomes: list[int] = []
    for round_ in range(3):
        old = {d["id"]: d["hash"] for d in IndexReader.open(index_dir).documents()}
        files = {name: _text(f"r{round_}x{rng.randrange(10**6)}", 2) for name in files}
        new = _write(docs, files)
        proc = _run_cli(docs, index_dir)
        # Python start-up takes seconds; start the clock once the writer holds the lock.
        deadline = time.monotonic() + 60
        while not _writer_holds_lock(index_dir) and proc.poll() is None:
            assert time.monotonic() < deadline, "the ingest never started writing"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        outcomes.append(proc.returncode)
        assert _state_after_crash(index_dir) in (old, new)
        _recover_and_check(docs, index_dir, new)
    assert -signal.SIGKILL in outcomes, "every ingest finished before its kill; nothing was tested"


def _writer_holds_lock(index_dir: Path) -> bool:
    lock = FileLock(index_dir / layout.LOCK)
    try:
        lock.acquire(timeout_s=0)
    except TimeoutError:
        return True
    lock.release()
    return False


def _drop_keyword_terms(index_dir: Path) -> None:
    """Make the committed version look like one written before keyword search."""
    conn = sqlite3.connect(index_dir / layout.STORE)
    conn.execute(f"DROP TABLE {keyword.TABLE}")
    conn.commit()
    conn.close()
    path = layout.current_manifest_path(index_dir)
    manifest = Manifest.read(path)
    manifest.keyword_analyzer = None
    manifest.write(path)


@pytest.mark.parametrize("point", ["after_db_commit", "before_current", "after_current", "mid_prune"])
def test_sigkill_while_adding_keyword_terms_to_an_old_index(
    two_versions: tuple[Path, Path, State, State], point: str
) -> None:
    """The commit that builds the terms of an index from before keyword search (no document
    changed) is killed: the old version survives without terms, or the new one with all of them."""
    docs, index_dir, old, _ = two_versions
    _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta"), "c.md": _text("gamma", 4)})  # = old
    _drop_keyword_terms(index_dir)
    assert _state_after_crash(index_dir, keyword_terms=False) == old
    proc = _run_cli(docs, index_dir, crash_at=point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    survived = point in BEFORE_SWAP
    assert _state_after_crash(index_dir, keyword_terms=not survived) == old
    _recover_and_check(docs, index_dir, old)  # the retry adds the terms (checked in there)


@pytest.fixture
def tampered(tmp_path: Path) -> tuple[Path, Path]:
    """An index, and a copy of it whose store the test may damage."""
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta", 5)})
    ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    _state_after_crash(index_dir)  # the untouched index passes every check
    copy = tmp_path / "copy"
    shutil.copytree(index_dir, copy)
    return copy, copy / layout.STORE


@pytest.mark.parametrize(
    "damage",
    [
        f"DELETE FROM {keyword.TABLE} WHERE rowid = (SELECT max(rowid) FROM {keyword.TABLE})",
        f"INSERT INTO {keyword.TABLE} (rowid, terms) VALUES (999999, 'alpha paragraph')",
    ],
    ids=["chunk without terms", "terms without chunk"],
)
def test_check_consistent_detects_keyword_rows_that_disagree_with_the_chunks(
    tampered: tuple[Path, Path], damage: str
) -> None:
    copy, store = tampered
    with sqlite3.connect(store) as conn:
        conn.execute(damage)
    with pytest.raises(AssertionError, match="keyword terms and chunks disagree"):
        IndexReader.open(copy).check_consistent()


def test_the_keyword_query_check_detects_terms_of_the_wrong_text(tampered: tuple[Path, Path]) -> None:
    """Ids that agree are not enough: a chunk whose terms are another chunk's is caught by the
    keyword queries the crash checks run."""
    copy, store = tampered
    with sqlite3.connect(store) as conn:
        conn.execute(f"UPDATE {keyword.TABLE} SET terms = 'beta paragraph' WHERE rowid = 0")
    IndexReader.open(copy).check_consistent()  # same ids on every side
    with pytest.raises(AssertionError):
        _state_after_crash(copy)


# --------------------------------------------------------------------------- compaction, conversion


def _search_results(index_dir: Path) -> list[list[int]]:
    reader = IndexReader.open(index_dir)
    embedder = HashEmbedder()
    found = [
        [h.chunk.id for h in reader.search(embedder.embed_query(q), 10)]
        for q in ("alpha", "gamma 2", "delta")
    ]
    reader.close()
    return found


@pytest.mark.parametrize("point", CRASH_POINTS[1:])  # compaction writes no documents: no mid_write
def test_sigkill_at_each_step_of_a_compaction(
    two_versions: tuple[Path, Path, State, State], point: str
) -> None:
    """Compaction publishes a version with the same documents: a kill at any step leaves either
    the old segments with their tombstones or the merged segment, with the same answers."""
    docs, index_dir, _, _ = two_versions
    new = _write(docs, {"a.md": _text("alpha", 5), "c.md": _text("gamma", 4), "d.md": _text("delta")})
    ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)  # deletes b: tombstones
    before = IndexReader.open(index_dir).manifest
    assert len(before.segments) > 1 and before.tombstones > 0
    expected = _search_results(index_dir)
    proc = _run_cli(None, index_dir, crash_at=point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert _state_after_crash(index_dir) == new
    assert _search_results(index_dir) == expected
    survived = IndexReader.open(index_dir).manifest
    assert (survived.segments == before.segments) is (point in BEFORE_SWAP)
    proc = _run_cli(None, index_dir)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    after = IndexReader.open(index_dir).manifest
    assert len(after.segments) == 1 and after.tombstones == 0
    assert _state_after_crash(index_dir) == new and _search_results(index_dir) == expected
    _check_no_debris(index_dir)


def _make_format_1(index_dir: Path) -> None:
    """Rewrite a (segmented) index as the earlier release wrote it: one folder per version with
    its own store.sqlite (no versioned rows), vectors.faiss and manifest.json."""
    import faiss
    import numpy as np

    reader = IndexReader.open(index_dir)
    manifest = reader.manifest
    ids = sorted(reader.chunk_ids())
    vectors = reader.vectors(ids)
    legacy = index_dir / f"v{manifest.version:06d}"
    legacy.mkdir()
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(manifest.dimension))
    flat.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
    faiss.write_index(flat, str(legacy / layout.LEGACY_VECTORS))
    old = sqlite3.connect(legacy / layout.LEGACY_STORE)
    old.executescript(
        "CREATE TABLE documents (id TEXT PRIMARY KEY, source TEXT, hash TEXT, metadata TEXT, "
        "indexed_at TEXT, chunks INTEGER, file_hash TEXT);"
        "CREATE TABLE chunks (id INTEGER PRIMARY KEY, document_id TEXT, source TEXT, page INTEGER, "
        'start INTEGER, "end" INTEGER, text TEXT, hash TEXT);'
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
    )
    old.execute("ATTACH DATABASE ? AS new", (str(index_dir / layout.STORE),))
    v = visible(manifest.version)
    old.execute(
        "INSERT INTO documents SELECT id, source, hash, metadata, indexed_at, chunks, file_hash "
        f"FROM new.documents WHERE {v}"
    )
    old.execute(
        'INSERT INTO chunks SELECT id, document_id, source, page, start, "end", text, hash '
        f"FROM new.chunks WHERE {v}"
    )
    old.execute("INSERT INTO meta SELECT key, value FROM new.meta")
    old.commit()
    old.close()
    reader.close()
    (legacy / layout.LEGACY_MANIFEST).write_text(
        manifest.model_copy(update={"format_version": 1, "segments": [], "tombstones": 0}).model_dump_json()
    )
    for path in [*layout.manifest_paths(index_dir), *segments.files(index_dir)]:
        path.unlink()
    for suffix in ("", "-wal", "-shm"):
        (index_dir / (layout.STORE + suffix)).unlink(missing_ok=True)
    (index_dir / layout.CURRENT).write_text(legacy.name + "\n")


@pytest.mark.parametrize("point", [None, "mid_write", *CRASH_POINTS[1:]])
def test_an_index_of_the_earlier_format_is_refused_with_a_hint_and_converted_safely(
    two_versions: tuple[Path, Path, State, State], point: str | None
) -> None:
    """`rag compact` converts a format-1 index in place; killed at any step, the old folder is
    still intact (and readers are told how to convert) or the conversion is complete."""
    from rag.errors import IndexFormatError

    docs, index_dir, old, _ = two_versions
    expected = _search_results(index_dir)
    _make_format_1(index_dir)
    with pytest.raises(IndexFormatError, match="rag compact --index"):
        IndexReader.open(index_dir)
    proc = _run_cli(None, index_dir, crash_at=point)
    _, err = proc.communicate(timeout=120)
    if point is not None:
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        if point in BEFORE_SWAP:
            with pytest.raises(IndexFormatError):
                IndexReader.open(index_dir)
            proc = _run_cli(None, index_dir)
            _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, None) or point is not None, err.decode()[-2000:]
    assert _state_after_crash(index_dir) == old
    assert _search_results(index_dir) == expected
    _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta"), "c.md": _text("gamma", 4)})
    _recover_and_check(docs, index_dir, old)
