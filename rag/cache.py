"""A semantic answer cache: the same (or nearly the same) question over the same documents is
answered from memory instead of by the generator (the GPTCache idea).

Two levels:

* **exact**: the normalised question (case, spacing and final punctuation folded) was answered;
* **similar**: the cosine between the question's embedding and a cached question's reaches
  ``cache.min_similarity`` *and* both ask about the same things: the same content words (stemmed;
  numbers, paths and names included) and the same negation. The embedding alone cannot tell a
  paraphrase from a question that changes one detail: on the hand-made pairs in
  tests/data/cache_pairs.jsonl, "... the tty group" vs "... the disk group" score 0.73 and
  "temporary files that survive a reboot" vs "... that do not survive a reboot" 0.99, above many
  true paraphrases (0.64-0.98). So a similar hit is a re-worded question (order, function words,
  case, punctuation), never a different one; paraphrases with other content words are misses,
  which cost a generation, not a wrong answer (bench/cache_threshold.py measures both).

An entry is only ever served under the same :class:`CacheScope`: the index version (so an answer is
never served after the documents changed), the collection, the filters, the retrieval depth and the
generation settings. The cache is bounded (least recently used entries are dropped) and thread-safe.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from rag.grounding.text import terms, tokens
from rag.protocols import Embedder

T = TypeVar("T")
_SPACE = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s?.!]+$")
NEGATIONS = frozenset({"not", "no", "never", "without", "cannot", "nor", "none"})


def asks_about(question: str) -> tuple[frozenset[str], bool]:
    """What a question is about for the similar level: its content words and whether it negates."""
    words = {t.lower() for t in tokens(question)}
    negated = bool(words & NEGATIONS) or any(w.endswith("n't") for w in words)
    return terms(question).content, negated


def normalise_question(question: str) -> str:
    """What two spellings of one question have in common: NFKC, case-folded, single spaces, no
    trailing ``?``/``.``/``!``."""
    text = unicodedata.normalize("NFKC", question).casefold()
    return _TRAILING.sub("", _SPACE.sub(" ", text).strip())


@dataclass(frozen=True)
class CacheScope:
    """Everything besides the question that decides the answer; entries never cross scopes."""

    index_version: int | None
    collection: str = "default"
    filters: str = ""  # a canonical string (SearchFilter.key)
    top_k: int = 0
    retrieval: str = ""  # mode and reranker: a different ranking may mean a different answer
    generation: str = ""  # a canonical string of the generation settings


@dataclass
class CacheHit(Generic[T]):
    value: T
    kind: str  # "exact" | "similar"
    similarity: float
    cached_question: str


@dataclass
class CacheStats:
    exact_hits: int = 0
    similar_hits: int = 0
    misses: int = 0
    saved_s: float = 0.0  # generation time the hits did not spend (the cached answers' own time)

    @property
    def hit_ratio(self) -> float:
        total = self.exact_hits + self.similar_hits + self.misses
        return (self.exact_hits + self.similar_hits) / total if total else 0.0


@dataclass
class _Entry(Generic[T]):
    question: str
    vector: np.ndarray
    about: tuple[frozenset[str], bool]
    value: T
    cost_s: float


@dataclass
class AnswerCache(Generic[T]):
    """Bounded LRU of answers by (scope, question); see the module docstring."""

    embedder: Embedder
    max_entries: int
    min_similarity: float
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[tuple[CacheScope, str], _Entry[T]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, question: str, scope: CacheScope) -> CacheHit[T] | None:
        norm = normalise_question(question)
        with self._lock:
            entry = self._entries.get((scope, norm))
            if entry is not None:
                return self._hit((scope, norm), entry, "exact", 1.0)
            about = asks_about(question)
            same_scope = [(k, e) for k, e in self._entries.items() if k[0] == scope and e.about == about]
        if not same_scope:
            self._miss()
            return None
        vector = self.embedder.embed_query(question)
        sims = np.stack([e.vector for _, e in same_scope]) @ vector
        best = int(np.argmax(sims))
        if float(sims[best]) < self.min_similarity:
            self._miss()
            return None
        key, entry = same_scope[best]
        with self._lock:
            if key not in self._entries:  # dropped meanwhile
                self.stats.misses += 1
                return None
            return self._hit(key, entry, "similar", float(sims[best]))

    def put(self, question: str, scope: CacheScope, value: T, cost_s: float = 0.0) -> None:
        norm = normalise_question(question)
        vector = np.asarray(self.embedder.embed_query(question), dtype=np.float32)
        with self._lock:
            self._entries[(scope, norm)] = _Entry(question, vector, asks_about(question), value, cost_s)
            self._entries.move_to_end((scope, norm))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def _hit(
        self, key: tuple[CacheScope, str], entry: _Entry[T], kind: str, similarity: float
    ) -> CacheHit[T]:
        self._entries.move_to_end(key)
        if kind == "exact":
            self.stats.exact_hits += 1
        else:
            self.stats.similar_hits += 1
        self.stats.saved_s += entry.cost_s
        return CacheHit(entry.value, kind, similarity, entry.question)

    def _miss(self) -> None:
        with self._lock:
            self.stats.misses += 1
