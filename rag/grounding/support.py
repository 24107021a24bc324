"""The default support judge: lexical evidence + embedding similarity, combined logistically.

Why not an NLI model: none is available offline (see REFERENCE.md). Why these signals: invented
details (a port, a version, a path, a name) are what a small generator adds, and they are exactly
the terms that are missing from the context; embedding similarity to the best context sentence
catches paraphrase that word overlap misses. The verdict names the missing terms, so a reader can
see why a statement was judged unsupported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.config import GroundingSettings
from rag.grounding.text import Terms, context_vocabulary, split_sentences, terms
from rag.protocols import Embedder, Support


@dataclass(frozen=True)
class _Contexts:
    vocab: list[frozenset[str]]  # per context
    vocab_all: frozenset[str]
    sentences: list[tuple[int, str]]  # (context index, sentence)
    vectors: np.ndarray | None  # one row per sentence


class LexicalSupportJudge:
    """Implements SupportJudge. With an embedder it also uses sentence similarity."""

    def __init__(self, settings: GroundingSettings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder

    def judge(self, statement: str, contexts: Sequence[str]) -> Support:
        return self.judge_many([statement], contexts)[0]

    def judge_many(self, statements: Sequence[str], contexts: Sequence[str]) -> list[Support]:
        """Batch form: contexts are analysed and embedded once for all statements."""
        ctx = self._prepare(contexts)
        sims = self._similarities(statements, ctx)
        return [self._judge_one(s, ctx, sims[i]) for i, s in enumerate(statements)]

    def _prepare(self, contexts: Sequence[str]) -> _Contexts:
        vocab = [context_vocabulary(c) for c in contexts]
        sentences = [(i, s) for i, c in enumerate(contexts) for s in split_sentences(c)]
        vectors = None
        if self.embedder is not None and sentences:
            vectors = self.embedder.embed_documents([s for _, s in sentences])
        return _Contexts(vocab, frozenset().union(*vocab), sentences, vectors)

    def _similarities(self, statements: Sequence[str], ctx: _Contexts) -> np.ndarray:
        if ctx.vectors is None or not statements:
            return np.zeros((len(statements), len(ctx.sentences)), dtype=np.float32)
        assert self.embedder is not None
        return self.embedder.embed_documents(list(statements)) @ ctx.vectors.T

    def _judge_one(self, statement: str, ctx: _Contexts, sims: np.ndarray) -> Support:
        t = terms(statement)
        if not t.content:
            return Support(score=1.0, supported=True, reason="no checkable content")
        missing = sorted(t.content - ctx.vocab_all)
        missing_critical = sorted(t.critical - ctx.vocab_all)
        coverage = 1.0 - len(missing) / len(t.content)
        best = _best_sentence(t, ctx, sims)
        similarity = float(sims[best]) if best is not None and ctx.vectors is not None else 0.0
        score = self._probability(coverage, similarity, len(missing_critical))
        context_index, evidence = ctx.sentences[best] if best is not None else (None, "")
        return Support(
            score=score,
            supported=score >= self.settings.min_support,
            context_index=context_index,
            evidence=evidence,
            missing=missing_critical + [m for m in missing if m not in missing_critical],
            reason=_reason(coverage, similarity, missing_critical),
        )

    def _probability(self, coverage: float, similarity: float, n_missing_critical: int) -> float:
        w = self.settings.weights
        logit = (
            w.bias
            + w.coverage * coverage
            + w.similarity * max(similarity, 0.0)
            + w.missing_critical * n_missing_critical
        )
        return 1.0 / (1.0 + math.exp(-logit))


def _best_sentence(t: Terms, ctx: _Contexts, sims: np.ndarray) -> int | None:
    """The context sentence sharing most of the statement's terms, ties broken by similarity."""
    if not ctx.sentences:
        return None
    overlaps = [len(t.content & context_vocabulary(s)) / len(t.content) for _, s in ctx.sentences]
    combined = np.asarray(overlaps) + (sims if sims.size else 0.0)
    return int(np.argmax(combined))


def _reason(coverage: float, similarity: float, missing_critical: list[str]) -> str:
    parts = [f"{coverage:.0%} of content words found", f"best sentence similarity {similarity:.2f}"]
    if missing_critical:
        parts.append("not in the context: " + ", ".join(missing_critical))
    return "; ".join(parts)
