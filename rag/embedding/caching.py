"""An embedder wrapper that remembers vectors by text. Scoring one sample embeds the same context
sentences for faithfulness, context precision (per context) and context recall; caching them makes
the support judge's cost one embedding per distinct sentence."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from rag.protocols import Embedder


class CachingEmbedder:
    """Implements Embedder by delegating to ``inner``; keeps up to ``max_items`` vectors (LRU)."""

    def __init__(self, inner: Embedder, max_items: int = 20_000) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens
        self.max_items = max_items
        self._docs: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._docs))
        if missing:
            for text, vec in zip(missing, self.inner.embed_documents(missing), strict=True):
                self._put(self._docs, text, vec)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        for t in texts:
            self._docs.move_to_end(t)
        return np.stack([self._docs[t] for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        if text not in self._queries:
            self._put(self._queries, text, self.inner.embed_query(text))
        return self._queries[text]

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def _put(self, store: OrderedDict[str, np.ndarray], key: str, vec: np.ndarray) -> None:
        store[key] = vec
        while len(store) > self.max_items:
            store.popitem(last=False)
