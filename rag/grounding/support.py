"""The default support judge: lexical evidence + embedding similarity, combined logistically.

Why not an NLI model: none is available offline. Why these signals: invented
details (a port, a version, a path, a name) are what a small generator adds, and they are exactly
the terms that are missing from the context; embedding similarity to the best context sentence
catches paraphrase that word overlap misses. The verdict names the missing terms, so a reader can
see why a statement was judged unsupported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.config import GroundingSettings
from rag.grounding.text import Terms, context_vocabulary, normalise_text, split_sentences, terms
from rag.protocols import Embedder, Support

_NUMBERISH = re.compile(r"^[\d.,:x-]+$")


@dataclass(frozen=True)
class SupportFeatures:
    """What the score is computed from; the weights are in GroundingSettings.weights."""

    coverage: float  # share of the statement's content words found in the contexts
    similarity: float  # cosine to the best context sentence
    n_missing_critical: int  # numbers, paths, flags, names found in no context
    n_contradictions: int  # missing critical terms where the evidence has another of the same kind
    best: int | None  # index of the evidence sentence in the prepared context sentences
    missing: tuple[str, ...]  # critical first, then other content words
    contradictions: tuple[str, ...]
    checkable: bool = True


@dataclass(frozen=True)
class Analysis:
    """One statement as the lexical judge saw it."""

    support: Support
    features: SupportFeatures
    evidence: list[str]  # the best-matching context sentences, in document order


@dataclass(frozen=True)
class _Contexts:
    vocab: list[frozenset[str]]  # per context
    vocab_all: frozenset[str]
    text: str  # all contexts, normalised, for matching quoted code spans
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
        return [a.support for a in self.analyse(statements, contexts, 1)]

    def _prepare(self, contexts: Sequence[str]) -> _Contexts:
        vocab = [context_vocabulary(c) for c in contexts]
        sentences = [(i, s) for i, c in enumerate(contexts) for s in split_sentences(c)]
        vectors = None
        if self.embedder is not None and sentences:
            vectors = self.embedder.embed_documents([s for _, s in sentences])
        text = normalise_text("\n".join(contexts))
        return _Contexts(vocab, frozenset().union(*vocab), text, sentences, vectors)

    def _similarities(self, statements: Sequence[str], ctx: _Contexts) -> np.ndarray:
        if ctx.vectors is None or not statements:
            return np.zeros((len(statements), len(ctx.sentences)), dtype=np.float32)
        assert self.embedder is not None
        return self.embedder.embed_documents(list(statements)) @ ctx.vectors.T

    def features(self, statements: Sequence[str], contexts: Sequence[str]) -> list[SupportFeatures]:
        """The evidence behind each verdict, before weighting (used to calibrate the weights)."""
        return [a.features for a in self.analyse(statements, contexts, 1)]

    def analyse(self, statements: Sequence[str], contexts: Sequence[str], n_sentences: int) -> list[Analysis]:
        """Verdict, features and the ``n_sentences`` best-matching context sentences (in their
        order in the contexts) per statement: the short evidence a second judge can read instead
        of every passage."""
        ctx = self._prepare(contexts)
        sims = self._similarities(statements, ctx)
        out = []
        for i, statement in enumerate(statements):
            t = terms(statement)
            ranked = _ranked_sentences(t, ctx, sims[i]) if t.content else []
            features = self._features(statement, ctx, sims[i])
            evidence = [ctx.sentences[j][1] for j in sorted(ranked[:n_sentences])]
            out.append(Analysis(self._support(statement, ctx, features), features, evidence))
        return out

    def _features(self, statement: str, ctx: _Contexts, sims: np.ndarray) -> SupportFeatures:
        t = terms(statement)
        if not t.content:
            return SupportFeatures(1.0, 1.0, 0, 0, None, (), (), checkable=False)
        missing = sorted(t.content - ctx.vocab_all)
        missing_critical = sorted(
            c for c in t.critical - ctx.vocab_all if not (c.startswith("`") and c.strip("`") in ctx.text)
        )
        coverage = 1.0 - len(missing) / len(t.content)
        best = _best_sentence(t, ctx, sims)
        similarity = float(sims[best]) if best is not None and ctx.vectors is not None else 0.0
        evidence = ctx.sentences[best][1] if best is not None else ""
        contradictions = _contradictions(missing_critical, t, evidence)
        return SupportFeatures(
            coverage,
            similarity,
            len(missing_critical),
            len(contradictions),
            best,
            tuple(missing_critical + [m for m in missing if m not in missing_critical]),
            tuple(contradictions),
        )

    def _support(self, statement: str, ctx: _Contexts, f: SupportFeatures) -> Support:
        if not f.checkable:
            return Support(text=statement, score=1.0, supported=True, reason="no checkable content")
        score = self.probability(f)
        context_index, evidence = ctx.sentences[f.best] if f.best is not None else (None, "")
        return Support(
            text=statement,
            score=score,
            supported=score >= self.settings.min_support,
            context_index=context_index,
            evidence=evidence,
            missing=list(f.missing),
            reason=_reason(f),
        )

    def logit(self, f: SupportFeatures) -> float:
        """The score before its sigmoid: what the ensemble judge combines with the LLM's."""
        w = self.settings.weights
        return (
            w.bias
            + w.coverage * f.coverage
            + w.similarity * max(f.similarity, 0.0)
            + w.missing_critical * f.n_missing_critical
            + w.contradiction * f.n_contradictions
        )

    def probability(self, f: SupportFeatures) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit(f)))


def _best_sentence(t: Terms, ctx: _Contexts, sims: np.ndarray) -> int | None:
    """The context sentence sharing most of the statement's terms, ties broken by similarity."""
    ranked = _ranked_sentences(t, ctx, sims)
    return ranked[0] if ranked else None


def _ranked_sentences(t: Terms, ctx: _Contexts, sims: np.ndarray) -> list[int]:
    """Context sentence indices, best match first: share of the statement's content words plus
    cosine similarity (a stable sort, so equal scores keep document order)."""
    if not ctx.sentences:
        return []
    overlaps = [len(t.content & context_vocabulary(s)) / len(t.content) for _, s in ctx.sentences]
    combined = np.asarray(overlaps) + (sims if sims.size else 0.0)
    return [int(i) for i in np.argsort(-combined, kind="stable")]


def _contradictions(missing_critical: list[str], t: Terms, evidence: str) -> list[str]:
    """Missing critical terms where the evidence sentence has a different one of the same kind:
    "port 8080" against a context saying "port 7341" is a contradiction, not just an omission."""
    if not missing_critical or not evidence:
        return []
    other = [c for c in terms(evidence).critical if c not in t.critical]
    kinds = {_kind(c) for c in other}
    return [m for m in missing_critical if _kind(m) in kinds]


def _kind(term: str) -> str:
    if _NUMBERISH.match(term):
        return "number"
    if "/" in term:
        return "path"
    if term.startswith("-"):
        return "flag"
    return "name"


def _reason(f: SupportFeatures) -> str:
    parts = [f"{f.coverage:.0%} of content words found", f"best sentence similarity {f.similarity:.2f}"]
    critical = list(f.missing[: f.n_missing_critical])
    if critical:
        parts.append("not in the context: " + ", ".join(critical))
    if f.contradictions:
        parts.append("differs from the context: " + ", ".join(f.contradictions))
    return "; ".join(parts)
