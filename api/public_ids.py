"""Document ids as the HTTP API shows them: opaque for files ingested from the server's disk.

Inside the index a document ingested with ``rag ingest`` has its normalised absolute path as its
id (``/srv/docs/a.md``); showing that over HTTP would tell every client how the server's disk is
laid out. So the API shows ``doc_`` + the first 16 hex digits of the id's SHA-256 instead: stable
(the same file keeps the same public id across versions and restarts), and meaningless without
the index. Uploads keep ``uploads/<name>``, which names nothing on the server but the upload.

A public id is turned back into the stored id through a table of the ids of one index version,
built once per version (a version never changes) from the ids alone, not the documents.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref

from rag.protocols import StoreSnapshot

UPLOAD_PREFIX = "uploads/"  # document ids (and sources) of uploaded files
OPAQUE_PREFIX = "doc_"
OPAQUE_HEX = 16  # 64 bits: a collision needs about 4 billion documents in one index
_OPAQUE = re.compile(rf"{OPAQUE_PREFIX}[0-9a-f]{{{OPAQUE_HEX}}}")

_tables: weakref.WeakKeyDictionary[StoreSnapshot, dict[str, str]] = weakref.WeakKeyDictionary()
_tables_lock = threading.Lock()


def public_id(doc_id: str) -> str:
    """The id clients see for the stored id ``doc_id``."""
    if doc_id.startswith(UPLOAD_PREFIX):
        return doc_id
    return OPAQUE_PREFIX + hashlib.sha256(doc_id.encode()).hexdigest()[:OPAQUE_HEX]


def stored_id(reader: StoreSnapshot, given: str) -> str | None:
    """The stored id that ``given`` (a public id) stands for in ``reader``'s version, or None.

    Stored paths are not accepted: clients only ever see public ids."""
    if given.startswith(UPLOAD_PREFIX):
        return given
    if not _OPAQUE.fullmatch(given):
        return None
    return _table(reader).get(given)


def _table(reader: StoreSnapshot) -> dict[str, str]:
    with _tables_lock:
        table = _tables.get(reader)
        if table is None:
            ids = reader.file_hashes()
            table = {public_id(i): i for i in ids if not i.startswith(UPLOAD_PREFIX)}
            _tables[reader] = table
        return table
