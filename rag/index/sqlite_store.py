"""Chunk text, documents and keyword terms in one SQLite file, rows tagged with versions.

Why versioned rows instead of a copy per version: copying the store into every commit made
adding one document cost time and disk proportional to the corpus. Now a commit is one SQLite
transaction that inserts its rows with ``added_in = N`` and marks replaced ones ``deleted_in =
N``; a reader of version V sees exactly the rows with ``added_in <= V`` and ``deleted_in`` unset
or ``> V`` (``visible(V)``), whatever a writer does meanwhile. SQLite runs in WAL mode, so
readers never wait for the writer, and the write transaction is durable (``synchronous=FULL``)
before the manifest that names version N is written (rag.index.writer).

Rows deleted more than ``keep_versions`` commits ago are purged by the next commit (no kept
version can see them). Vectors of deleted chunks stay in their immutable segment until
compaction rewrites it: ``tombstones`` lists those ids, with the version that deleted them and
the one whose compaction dropped them from every segment it writes.

Chunk ids are the FAISS ids; they only grow, so a deleted chunk's id is never reused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.index import keyword
from rag.types import Chunk

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    hash TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    indexed_at TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    file_hash TEXT,
    file_stat TEXT,
    added_in INTEGER NOT NULL,
    deleted_in INTEGER
);
CREATE INDEX IF NOT EXISTS documents_id ON documents(id, deleted_in);
CREATE INDEX IF NOT EXISTS documents_added ON documents(added_in);
CREATE INDEX IF NOT EXISTS documents_deleted ON documents(deleted_in);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL,
    source TEXT NOT NULL,
    page INTEGER,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    hash TEXT NOT NULL,
    added_in INTEGER NOT NULL,
    deleted_in INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id, deleted_in);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(hash);
CREATE INDEX IF NOT EXISTS chunks_added ON chunks(added_in);
CREATE INDEX IF NOT EXISTS chunks_deleted ON chunks(deleted_in);
CREATE TABLE IF NOT EXISTS tombstones (
    chunk_id INTEGER PRIMARY KEY,
    deleted_in INTEGER NOT NULL,
    dropped_in INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

CHUNK_COLUMNS = 'c.id, c.document_id, c.source, c.page, c.start, c."end", c.text, d.metadata'
DOCUMENT_COLUMNS = "id, source, hash, metadata, indexed_at, chunks"
WAL_KEEP_BYTES = 64 * 1024 * 1024
BUSY_TIMEOUT_S = 30.0  # a reader waits this long for WAL recovery or a checkpoint, never for the writer


def visible(version: int, table: str = "") -> str:
    """The SQL condition for rows of ``table`` (an alias, or none) that version ``version`` sees."""
    t = f"{table}." if table else ""
    return f"({t}added_in <= {int(version)} AND ({t}deleted_in IS NULL OR {t}deleted_in > {int(version)}))"


LATEST = "deleted_in IS NULL"  # what the writer sees: the live rows plus its own uncommitted ones


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A reader's connection (``mode=ro``, shared by the server's threads under a lock) or the
    writer's (autocommit mode: the writer opens and commits its one transaction explicitly)."""
    if readonly:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    conn.execute("PRAGMA journal_mode = WAL")
    # The commit's transaction must be on disk before the manifest that names its version.
    conn.execute("PRAGMA synchronous = FULL")
    # A bulk commit grows the WAL by its whole size; once checkpointed, keep at most this much of
    # it on disk (the server's open readers stop SQLite deleting the file).
    conn.execute(f"PRAGMA journal_size_limit = {WAL_KEEP_BYTES}")
    conn.executescript(f"BEGIN; {SCHEMA}; {keyword.SCHEMA}; COMMIT;")
    return conn


def fetch_chunks(
    conn: sqlite3.Connection, ids: Sequence[int], version: int
) -> dict[int, tuple[Chunk, dict[str, Any]]]:
    """Chunks visible at ``version`` with their document's metadata, by id (others are absent)."""
    if not ids:
        return {}
    rows = conn.execute(
        f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
        f"AND {visible(version, 'd')} WHERE {visible(version, 'c')} "
        "AND c.id IN (SELECT value FROM json_each(?))",
        (json.dumps([int(i) for i in ids]),),
    ).fetchall()
    return {row[0]: (_chunk(row), json.loads(row[7])) for row in rows}


def _chunk(row: tuple[Any, ...]) -> Chunk:
    cid, doc_id, source, page, start, end, text, _ = row
    return Chunk(document_id=doc_id, source=source, page=page, start=start, end=end, text=text, id=cid)


def insert_chunks(conn: sqlite3.Connection, chunks: Sequence[Chunk], version: int) -> None:
    """Chunk rows and their keyword terms, in the writer's transaction (so they commit together)."""
    conn.executemany(
        'INSERT INTO chunks (id, document_id, source, page, start, "end", text, hash, added_in) '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(c.id, c.document_id, c.source, c.page, c.start, c.end, c.text, c.hash, version) for c in chunks],
    )
    keyword.add(conn, [(int(c.id), c.text) for c in chunks if c.id is not None])


def live_chunk_ids_of(conn: sqlite3.Connection, doc_id: str) -> list[int]:
    return [
        int(r[0])
        for r in conn.execute(f"SELECT id FROM chunks WHERE document_id = ? AND {LATEST}", (doc_id,))
    ]


def erase_chunks(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """Remove chunk rows and their keyword terms for good (never-committed or purged rows)."""
    keyword.remove(conn, ids)
    conn.executemany("DELETE FROM chunks WHERE id = ?", [(int(i),) for i in ids])


def next_chunk_id(conn: sqlite3.Connection) -> int:
    """Ids only grow, so a deleted chunk's id is never reused by another chunk."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'next_chunk_id'").fetchone()
    return int(row[0]) if row else 0


def set_next_chunk_id(conn: sqlite3.Connection, value: int) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('next_chunk_id', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(value),),
    )


def chunk_ids_of_documents(conn: sqlite3.Connection, doc_ids: Sequence[str], version: int) -> list[int]:
    out: list[int] = []
    for i in range(0, len(doc_ids), 500):  # stay under SQLite's bound-parameter limit
        part = list(doc_ids[i : i + 500])
        marks = ",".join("?" * len(part))
        out.extend(
            r[0]
            for r in conn.execute(
                f"SELECT id FROM chunks WHERE document_id IN ({marks}) AND {visible(version)}", part
            )
        )
    return out


def invisible_chunk_ids(conn: sqlite3.Connection, version: int) -> list[int]:
    """Chunk rows still stored that ``version`` must not see: added by a later commit, or deleted
    by it or before and not yet purged. Few (the recent changes), found through two indexes."""
    rows = conn.execute(
        "SELECT id FROM chunks WHERE added_in > ? UNION SELECT id FROM chunks WHERE deleted_in <= ?",
        (int(version), int(version)),
    )
    return [int(r[0]) for r in rows]


def tombstoned_ids(conn: sqlite3.Connection, version: int) -> list[int]:
    """Ids whose vectors version ``version``'s segments still hold but must never return."""
    rows = conn.execute(
        "SELECT chunk_id FROM tombstones WHERE deleted_in <= ? AND (dropped_in IS NULL OR dropped_in > ?)",
        (int(version), int(version)),
    )
    return [int(r[0]) for r in rows]


def counts(conn: sqlite3.Connection, version: int) -> tuple[int, int]:
    docs = conn.execute(f"SELECT COUNT(*) FROM documents WHERE {visible(version)}").fetchone()[0]
    chunks = conn.execute(f"SELECT COUNT(*) FROM chunks WHERE {visible(version)}").fetchone()[0]
    return int(docs), int(chunks)


def purge(conn: sqlite3.Connection, older_than: int) -> None:
    """Drop rows no kept version can see: deleted at ``older_than`` or before (and tombstones of
    vectors that every kept version's segments have already dropped)."""
    ids = [int(r[0]) for r in conn.execute("SELECT id FROM chunks WHERE deleted_in <= ?", (older_than,))]
    erase_chunks(conn, ids)
    conn.execute("DELETE FROM documents WHERE deleted_in <= ?", (older_than,))
    conn.execute("DELETE FROM tombstones WHERE dropped_in <= ?", (older_than,))


def roll_back_after(conn: sqlite3.Connection, live: int) -> None:
    """Undo what a writer killed after its SQLite commit but before CURRENT moved left behind:
    rows of versions after ``live`` go, and deletions by them are undone."""
    erase_chunks(conn, [int(r[0]) for r in conn.execute("SELECT id FROM chunks WHERE added_in > ?", (live,))])
    conn.execute("DELETE FROM documents WHERE added_in > ?", (live,))
    for table in ("documents", "chunks"):
        conn.execute(f"UPDATE {table} SET deleted_in = NULL WHERE deleted_in > ?", (live,))
    conn.execute("DELETE FROM tombstones WHERE deleted_in > ?", (live,))
    conn.execute("UPDATE tombstones SET dropped_in = NULL WHERE dropped_in > ?", (live,))
