"""Read-only view of one committed index version: the unit the server answers from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag.index import layout
from rag.index.manifest import Manifest
from rag.index.sqlite_store import connect, fetch_chunks
from rag.types import ScoredChunk


class IndexReader:
    def __init__(self, root: Path, version_dir: Path) -> None:
        self.root = root
        self.version_dir = version_dir
        self.manifest = Manifest.read(version_dir / layout.MANIFEST)
        self._vectors = faiss.read_index(str(version_dir / layout.VECTORS))
        self._conn = connect(version_dir / layout.STORE, readonly=True)

    @classmethod
    def open(cls, root: Path) -> IndexReader:
        root = Path(root)
        return cls(root, layout.current_version_dir(root))

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def size(self) -> int:
        return int(self._vectors.ntotal)

    def is_stale(self) -> bool:
        """True when a writer has committed a newer version since this one was opened."""
        try:
            return layout.current_version_dir(self.root) != self.version_dir
        except FileNotFoundError:
            return False

    def search(self, query: np.ndarray, top_k: int) -> list[ScoredChunk]:
        """Top-k chunks by cosine similarity (inner product of normalised vectors)."""
        k = min(top_k, self.size)
        if k <= 0:
            return []
        scores, ids = self._vectors.search(np.asarray(query, dtype=np.float32).reshape(1, -1), k)
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        found = fetch_chunks(self._conn, [i for i, _ in hits])
        return [ScoredChunk(chunk=found[i][0], score=s, metadata=found[i][1]) for i, s in hits if i in found]

    def documents(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT id, source, hash, metadata, indexed_at, chunks FROM documents ORDER BY id"
        ).fetchall()
        return [_document(row) for row in rows]

    def chunk_ids(self) -> set[int]:
        return {int(r[0]) for r in self._conn.execute("SELECT id FROM chunks")}

    def vector_ids(self) -> set[int]:
        return set(faiss.vector_to_array(self._vectors.id_map).tolist())

    def close(self) -> None:
        self._conn.close()


def _document(row: tuple[Any, ...]) -> dict[str, Any]:
    doc_id, source, digest, metadata, indexed_at, chunks = row
    return {
        "id": doc_id,
        "source": source,
        "hash": digest,
        "metadata": json.loads(metadata),
        "indexed_at": indexed_at,
        "chunks": chunks,
    }
