"""Chunk text and document metadata in SQLite, keyed by the same int64 ids as the FAISS vectors."""

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
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    hash TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    indexed_at TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    file_hash TEXT,
    file_stat TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id),
    source TEXT NOT NULL,
    page INTEGER,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(hash);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

CHUNK_COLUMNS = 'c.id, c.document_id, c.source, c.page, c.start, c."end", c.text, d.metadata'


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """Read-only connections open committed versions, which never change: ``immutable=1`` tells
    SQLite to skip locking and journal checks (and works after the directory has been pruned)."""
    if readonly:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    else:
        # Only staging copies are opened for writing. They become visible solely by being fsynced
        # and renamed whole (see IndexWriter.commit), and a crash before that discards them, so
        # SQLite's own journal and syncs would only slow every commit down.
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = MEMORY")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript(f"BEGIN; {SCHEMA}; {keyword.SCHEMA}; COMMIT;")
        migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection, *, analyzer: str | None = keyword.ANALYZER) -> bool:
    """Bring a store written by an older version up to SCHEMA (only staging copies are written,
    so an old index is upgraded by its next commit and readers of older versions are unaffected).

    ``analyzer`` is the keyword analysis the store's terms were made with (the manifest's
    ``keyword_analyzer``); a store without keyword terms, or with terms of another analysis, has
    them rebuilt from its chunk text. Returns True when that happened (the writer then commits
    even if no document changed, so the upgrade is not lost)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(documents)")}
    if "file_hash" not in columns:  # added with parse skipping; NULL means "parse it to find out"
        conn.execute("ALTER TABLE documents ADD COLUMN file_hash TEXT")
    if "file_stat" not in columns:  # added with the stat fast path; NULL means "hash it"
        conn.execute("ALTER TABLE documents ADD COLUMN file_stat TEXT")
    if keyword.exists(conn) and analyzer == keyword.ANALYZER:
        return False
    keyword.rebuild(conn)
    return True


def fetch_chunks(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, tuple[Chunk, dict[str, Any]]]:
    """Chunks with their document's metadata, by id (ids missing from the store are absent)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
        f"WHERE c.id IN ({marks})",
        [int(i) for i in ids],
    ).fetchall()
    return {row[0]: (_chunk(row), json.loads(row[7])) for row in rows}


def _chunk(row: tuple[Any, ...]) -> Chunk:
    cid, doc_id, source, page, start, end, text, _ = row
    return Chunk(document_id=doc_id, source=source, page=page, start=start, end=end, text=text, id=cid)


def insert_chunks(conn: sqlite3.Connection, chunks: Sequence[Chunk]) -> None:
    """Chunk rows and their keyword terms, in the caller's transaction (so they commit together)."""
    conn.executemany(
        'INSERT INTO chunks (id, document_id, source, page, start, "end", text, hash) '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(c.id, c.document_id, c.source, c.page, c.start, c.end, c.text, c.hash) for c in chunks],
    )
    keyword.add(conn, [(int(c.id), c.text) for c in chunks if c.id is not None])


def delete_chunks_of(conn: sqlite3.Connection, doc_id: str) -> list[int]:
    """Remove a document's chunk rows and keyword terms; returns the chunk ids removed."""
    ids = [int(r[0]) for r in conn.execute("SELECT id FROM chunks WHERE document_id = ?", (doc_id,))]
    keyword.remove(conn, ids)
    conn.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
    return ids


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


def chunk_ids_of_documents(conn: sqlite3.Connection, doc_ids: Sequence[str]) -> list[int]:
    out: list[int] = []
    for i in range(0, len(doc_ids), 500):  # stay under SQLite's bound-parameter limit
        part = list(doc_ids[i : i + 500])
        marks = ",".join("?" * len(part))
        out.extend(r[0] for r in conn.execute(f"SELECT id FROM chunks WHERE document_id IN ({marks})", part))
    return out


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    docs = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    chunks = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    return int(docs), int(chunks)
