"""Keyword (BM25) search over the same chunks, in the chunk store itself: an SQLite FTS5 table.

Why FTS5 in ``store.sqlite`` rather than a separate BM25 library with its own files: the
keyword rows are written in the same SQLite transaction as the chunk rows, in the same staged
version directory that one rename commits (rag/index/writer.py), so the keyword side can never
disagree with the chunk text or the vectors, and an upsert or delete updates it incrementally
instead of rebuilding a whole BM25 matrix per commit. Measured against ``bm25s`` on the
retrieval benchmark (docs/retrieval.md): the same ranking quality.

FTS5 tokenises with its own rules (``unicode61``); we want English stop words removed and the
Snowball stemmer (PyStemmer), the analysis that measured best. So the text is analysed here,
in Python, the same way for chunks and queries, and FTS5 indexes the resulting space-separated
terms. An identifier written with punctuation inside (``max_tokens``, ``/v1/query``,
``rag-service``) is indexed as its parts *and* as the joined form (``maxtokens``), so typing the
exact name scores higher than a text that merely has its parts somewhere. Numbers with inner
punctuation (``3.0``, ``2026-12-02``) are only indexed as their parts: joined, ``3.0`` would
match ``30``.

Scores are FTS5's ``bm25()`` (k1 = 1.2, b = 0.75) negated, so that higher is better.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence

import Stemmer

# Recorded in the manifest (Manifest.keyword_analyzer): an index analysed another way must be
# rebuilt, because query terms are only comparable with terms analysed by the same rules.
ANALYZER = "snowball-english-v2"  # v2: numbers like 3.0 are not joined (they read as 30)
TABLE = "chunk_terms"
SCHEMA = f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(terms, tokenize = 'unicode61')"

# A standard English stop-word list (the one Lucene's EnglishAnalyzer and bm25s use, plus a few
# auxiliaries); function words carry no topic, and removing them keeps BM25 from rewarding them.
STOPWORDS = frozenset(
    """
    a an and are as at be but by for if in into is it no not of on or such that the their then
    there these they this to was will with i me my we our you your he him his she her its them
    what which who whom whose when where why how all any both each few more most other some than
    too very can could should would do does did doing done has have had having been being am
    were from up down out off over under again further once here same so only own just s t
    """.split()
)
_WORD = re.compile(r"[^\W_]+")  # letters and digits; "_" and punctuation separate parts
_COMPOUND = re.compile(r"\w(?:[\w./:+#-]*[\w+#])?")  # a token that may hold inner punctuation
_STEMMER = Stemmer.Stemmer("english")
_QUERY_TERMS = 64  # longest keyword query, in distinct terms (FTS5 cost grows with each OR)


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def analyze(text: str) -> list[str]:
    """The index terms of ``text``: lower-cased words without stop words, Snowball-stemmed,
    plus the joined form of each compound identifier."""
    terms: list[str] = []
    for token in _COMPOUND.findall(text.lower()):
        parts = _WORD.findall(token)
        terms.extend(_stem(p) for p in parts if p not in STOPWORDS)
        if len(parts) > 1 and not all(p.isdigit() for p in parts):
            terms.append("".join(parts))  # an identifier; a version or date (3.0, 2026-12-02) is not
    return terms


def create(conn: sqlite3.Connection) -> None:
    conn.execute(SCHEMA)


def exists(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone()
    return row is not None


def add(conn: sqlite3.Connection, chunks: Iterable[tuple[int, str]]) -> None:
    """Index (chunk id, text) pairs; the chunk id is the FTS rowid, shared with FAISS."""
    conn.executemany(
        f"INSERT INTO {TABLE} (rowid, terms) VALUES (?, ?)",
        [(int(cid), " ".join(analyze(text))) for cid, text in chunks],
    )


def remove(conn: sqlite3.Connection, chunk_ids: Sequence[int]) -> None:
    conn.executemany(f"DELETE FROM {TABLE} WHERE rowid = ?", [(int(i),) for i in chunk_ids])


def rebuild(conn: sqlite3.Connection) -> None:
    """Create and fill the table from the stored chunks (an index written before keyword search)."""
    create(conn)
    conn.execute(f"DELETE FROM {TABLE}")
    add(conn, conn.execute("SELECT id, text FROM chunks").fetchall())


def indexed_ids(conn: sqlite3.Connection) -> set[int]:
    return {int(r[0]) for r in conn.execute(f"SELECT rowid FROM {TABLE}")}


def match_expression(query: str) -> str | None:
    """The FTS5 query for ``query``: any of its terms (OR), each quoted so no term is read as
    FTS5 syntax; None when nothing searchable is left (only stop words or punctuation)."""
    terms = list(dict.fromkeys(analyze(query)))[:_QUERY_TERMS]
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


def search(
    conn: sqlite3.Connection,
    query: str,
    k: int,
    allowed: Sequence[int] | None = None,
    excluded: Sequence[int] = (),
) -> list[tuple[int, float]]:
    """The ``k`` best (chunk id, score) for ``query``, best first; with ``allowed``, the best
    among those chunk ids only (filters apply before the top-k, as in dense search); never one
    of ``excluded`` (rows the reader's version must not see)."""
    expression = match_expression(query)
    if expression is None or k <= 0 or (allowed is not None and len(allowed) == 0):
        return []
    sql = f"SELECT rowid, bm25({TABLE}) FROM {TABLE} WHERE {TABLE} MATCH ?"
    args: list[object] = [expression]
    if allowed is not None:
        sql += " AND rowid IN (SELECT value FROM json_each(?))"
        args.append(json.dumps([int(i) for i in allowed]))
    if excluded:
        sql += " AND rowid NOT IN (SELECT value FROM json_each(?))"
        args.append(json.dumps([int(i) for i in excluded]))
    sql += " ORDER BY bm25(" + TABLE + ") LIMIT ?"
    args.append(int(k))
    return [(int(cid), -float(score)) for cid, score in conn.execute(sql, args)]


def scores(conn: sqlite3.Connection, query: str, chunk_ids: Sequence[int]) -> dict[int, float]:
    """BM25 scores of exactly these chunks (0.0 for one that shares no term with the query), so
    a chunk found only by dense search still gets its true keyword score for fusion."""
    found = dict(search(conn, query, len(chunk_ids), chunk_ids))
    return {int(cid): found.get(int(cid), 0.0) for cid in chunk_ids}
