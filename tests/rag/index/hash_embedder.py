"""A deterministic stand-in embedder for tests of index *bookkeeping* (ids, versions, deletes).

Why not MiniLM here: the property tests commit hundreds of versions and the crash tests start a
fresh process per kill; what they check (SQLite rows, FAISS ids and a model of the corpus agree;
a deleted chunk is never returned) does not depend on what the vectors mean, only on which
vectors exist. Hashing words into 384 buckets gives distinct, normalised, reproducible vectors
in microseconds. Semantics are tested with the real MiniLM elsewhere (and once in
test_bookkeeping.py). Usable as ``embedding.backend: tests.rag.index.hash_embedder:HashEmbedder``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

WORD = re.compile(r"\w+")
DIM = 384


class HashEmbedder:
    model_id = "test:hash-bag-of-words-384"
    dim = DIM
    max_tokens = 256
    batch_size = 64

    def __init__(self, settings: object = None) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(WORD.findall(text))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, DIM), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._one(text)

    def _one(self, text: str) -> np.ndarray:
        vec = np.zeros(DIM, np.float32)
        for word in WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % DIM
            vec[bucket] += 1.0 if digest[4] & 1 else -1.0
        if not vec.any():
            vec[0] = 1.0  # text without words still gets a valid unit vector
        return vec / np.linalg.norm(vec)
