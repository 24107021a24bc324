"""Per-sample metrics. Each function is pure given a judge and an embedder, returns plain data,
and returns ``None`` (never NaN) when the metric does not apply; the caller records why.

Definitions follow RAGAS (README, "Where we differ from RAGAS, and why") with these differences:
- statements come from code (sentences, then clauses), not from an LLM rewrite;
- "supported" is decided by a SupportJudge (the same one the answer path uses), not by an LLM;
- a refusal is not scored for faithfulness or relevance: it is flagged and counted instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from rag.config import MetricsSettings
from rag.grounding.statements import split_statements
from rag.grounding.text import split_sentences, terms
from rag.protocols import Embedder, GenerationParams, Generator, Support, SupportJudge, judge_all

# Thresholds and weights are the `metrics:` config section (why each value: rag/config.py,
# MetricsSettings); callers pass the configured one, these defaults serve direct use and tests.
DEFAULT_METRICS = MetricsSettings()


def reported(statements: Sequence[str], supports: Sequence[Support]) -> list[Support]:
    """The judge's verdicts as results report them: each names its statement (whatever the
    judge filled in), the score rounded to 4 places."""
    return [
        replace(s, text=t, supported=bool(s.supported), score=round(float(s.score), 4))
        for t, s in zip(statements, supports, strict=True)
    ]


def judge_many(judge: SupportJudge, statements: Sequence[str], contexts: Sequence[str]) -> list[Support]:
    if not statements:
        return []
    return judge_all(judge, statements, contexts)


def checkable(statements: Sequence[str]) -> list[str]:
    """Statements that assert something (at least one content word)."""
    return [s for s in statements if terms(s).content]


# ---------------------------------------------------------------- faithfulness
def faithfulness(
    answer: str, contexts: Sequence[str], judge: SupportJudge
) -> tuple[float | None, list[Support]]:
    """supported statements / statements; None when the answer makes no checkable statement."""
    statements = checkable(split_statements(answer))
    if not statements:
        return None, []
    verdicts = reported(statements, judge_many(judge, statements, contexts))
    return sum(v.supported for v in verdicts) / len(verdicts), verdicts


# ---------------------------------------------------------------- relevance
def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))


def answer_relevance_embedding(
    question: str, answer: str, embedder: Embedder, evidence: Sequence[str] = ()
) -> float:
    """cos(E(q), E(a)): the cheap variant. Measures topical closeness, not completeness.

    ``evidence``: the context sentences that back the answer's supported statements. Then it is
    the best of the cosines of the question to the answer and to each of them: a terse answer
    ("65534") has too few words for its own vector to be near the question, but the sentence it
    was taken from is. The answer path's relevance check uses this form (rag.injection)."""
    q = embedder.embed_query(question)
    vectors = embedder.embed_documents([answer, *evidence])
    return round(max(max(_cos(q, v) for v in vectors), 0.0), 4)


def generate_questions(
    answer: str, generator: Generator, n: int = DEFAULT_METRICS.generated_questions
) -> list[str]:
    """RAGAS-style: n questions the answer would answer, one generation, one question per line."""
    messages = [
        {
            "role": "system",
            "content": "You write questions. Reply with the questions only, one per line, no numbering.",
        },
        {
            "role": "user",
            "content": f"Write {n} different questions that this answer answers.\n\nAnswer: {answer}",
        },
    ]
    text = generator.generate(messages, GenerationParams(max_tokens=30 * n, temperature=0.0)).text
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("-*0123456789.) ").strip()
        if len(line.split()) >= 3:
            out.append(line)
    return out[:n]


def answer_relevance_questions(question: str, generated: Sequence[str], embedder: Embedder) -> float | None:
    """mean cos(E(q), E(q_i)) over the questions generated from the answer."""
    if not generated:
        return None
    q = embedder.embed_query(question)
    vecs = embedder.embed_documents(list(generated))
    return round(float(np.mean([max(_cos(q, v), 0.0) for v in vecs])), 4)


# ---------------------------------------------------------------- contexts
def context_precision(
    reference: str, contexts: Sequence[str], judge: SupportJudge
) -> tuple[float | None, list[bool]]:
    """Rank-aware: sum_k precision@k * v_k / sum_k v_k; v_k = c_k alone supports >= 1 reference
    statement. 0.0 when no context is useful; None without contexts or reference statements."""
    ref = checkable(split_statements(reference))
    if not contexts or not ref:
        return None, []
    useful = [any(s.supported for s in judge_many(judge, ref, [c])) for c in contexts]
    if not any(useful):
        return 0.0, useful
    hits, total = 0, 0.0
    for k, v in enumerate(useful, 1):
        if v:
            hits += 1
            total += hits / k
    return round(total / sum(useful), 4), useful


def context_recall(
    reference: str, contexts: Sequence[str], judge: SupportJudge
) -> tuple[float | None, list[Support]]:
    """Share of the reference's sentences supported by the contexts."""
    sentences = checkable(split_sentences(reference))
    if not sentences or not contexts:
        return (None if not sentences else 0.0), []
    verdicts = reported(sentences, judge_many(judge, sentences, contexts))
    return round(sum(v.supported for v in verdicts) / len(verdicts), 4), verdicts


def context_relevance(
    question: str,
    contexts: Sequence[str],
    embedder: Embedder,
    metrics: MetricsSettings = DEFAULT_METRICS,
) -> float | None:
    """Share of context sentences relevant to the question: cosine at least
    metrics.context_relevance_min_cosine, or content-word overlap at least
    metrics.context_relevance_min_overlap."""
    sentences = [s for c in contexts for s in split_sentences(c)]
    if not sentences:
        return None
    q = embedder.embed_query(question)
    sims = embedder.embed_documents(sentences) @ q
    q_terms = terms(question).content
    relevant = 0
    for sentence, sim in zip(sentences, sims, strict=True):
        overlap = len(q_terms & terms(sentence).content) / len(q_terms) if q_terms else 0.0
        if sim >= metrics.context_relevance_min_cosine or overlap >= metrics.context_relevance_min_overlap:
            relevant += 1
    return round(relevant / len(sentences), 4)


# ---------------------------------------------------------------- correctness
@dataclass
class Correctness:
    score: float
    f1: float
    similarity: float
    tp: int
    fp: int
    fn: int
    false_positives: list[str]  # answer statements the reference does not support
    false_negatives: list[str]  # reference statements the answer does not cover

    def as_dict(self) -> dict:
        return asdict(self)


def answer_correctness(
    answer: str,
    reference: str,
    judge: SupportJudge,
    embedder: Embedder,
    metrics: MetricsSettings = DEFAULT_METRICS,
) -> Correctness | None:
    """w * F1 + (1 - w) * cos(E(a), E(g)) with w = metrics.correctness_f1_weight (0.75); TP/FP
    from answer statements judged against the reference, FN from reference statements judged
    against the answer."""
    a_st = checkable(split_statements(answer))
    g_st = checkable(split_statements(reference))
    if not a_st or not g_st:
        return None
    a_sup = judge_many(judge, a_st, [reference])
    g_sup = judge_many(judge, g_st, [answer])
    tp = sum(s.supported for s in a_sup)
    fp = len(a_st) - tp
    fn = sum(not s.supported for s in g_sup)
    f1 = tp / (tp + 0.5 * (fp + fn)) if tp else 0.0
    vecs = embedder.embed_documents([answer, reference])
    sim = max(_cos(vecs[0], vecs[1]), 0.0)
    w = metrics.correctness_f1_weight
    return Correctness(
        round(w * f1 + (1 - w) * sim, 4),
        round(f1, 4),
        round(sim, 4),
        tp,
        fp,
        fn,
        [t for t, s in zip(a_st, a_sup, strict=True) if not s.supported],
        [t for t, s in zip(g_st, g_sup, strict=True) if not s.supported],
    )


def refusal_correct(refused: bool, answerable: bool | None) -> float | None:
    """1.0 when the system refused exactly the unanswerable questions; None when not labelled."""
    if answerable is None:
        return None
    return 1.0 if refused == (not answerable) else 0.0
