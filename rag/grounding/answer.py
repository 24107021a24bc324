"""Decide in code whether a generated answer may be shown, and which chunks it cites.

The default generator answers well when the passage is there, but rarely cites and does not
refuse reliably, so neither is left to it: every sentence is checked against the
retrieved chunks, citations come from the evidence found, and an answer whose content is not
mostly supported is replaced by a refusal.

Citations. A supported sentence cites the chunk holding its evidence (the judge's
``context_index``). A marker the model wrote, ``[n]``, is a claim that chunk n supports the
sentence, and a wrong one lends that chunk false authority; so it is kept only when the sentence,
judged against chunk n alone, is supported. Markers on unsupported sentences, and markers that
point to no retrieved chunk, are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rag.config import GroundingSettings
from rag.grounding.text import markers, split_sentences, strip_markers, terms
from rag.protocols import Support, SupportJudge, judge_all

_SOURCE = r"(?:documents?|context|passages?|texts?|sources?|information provided)"
_REFUSAL = re.compile(
    "|".join(
        [
            rf"\b{_SOURCE}\s+(?:do|does|did)\s*(?:not|n't)\s+(?:contain|mention|provide|specify|say|include"
            r"|state|describe|give|cover|address|explain)",
            rf"\bnot\s+(?:mentioned|specified|provided|stated|described|given|covered|found|included)\s+"
            rf"in\s+the\s+(?:\w+\s+)?{_SOURCE}",
            r"\bno\s+(?:information|mention|details?)\s+(?:about|on|regarding|of|is|are)\b",
            r"\bI\s+(?:do\s+not|don't)\s+know\b",
            r"\bI\s+(?:cannot|can't|am unable to)\s+(?:answer|find|determine)",
            r"\b(?:answer|information)\s+is\s+not\s+(?:in|available|provided|present|given)\b",
        ]
    ),
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


@dataclass
class AnswerSentence:
    """One sentence of the draft: the judge's verdict on it (the one verdict type, Support, whose
    ``text`` is the sentence without markers) and where it sits in the answer."""

    raw: str  # as the model wrote it
    support: Support
    cited: list[int]  # 1-based positions in the retrieved chunk list
    weight: int  # number of content words: what this sentence claims

    @property
    def text(self) -> str:
        """The sentence without citation markers, as judged."""
        return self.support.text


@dataclass
class GroundedAnswer:
    answer: str  # the answer with [n] markers, or the refusal message
    refused: bool
    reason: str
    supported_fraction: float = 0.0
    sentences: list[AnswerSentence] = field(default_factory=list)

    @property
    def cited(self) -> list[int]:
        return sorted({n for s in self.sentences for n in s.cited})


def ground_answer(
    answer: str, contexts: Sequence[str], judge: SupportJudge, settings: GroundingSettings
) -> GroundedAnswer:
    text = answer.strip()
    early = _refusal_before_judging(text, settings)
    if early is not None:
        return early
    return decide(text, judge_sentences(split_sentences(text), contexts, judge), settings)


def decide(text: str, verdicts: list[AnswerSentence], settings: GroundingSettings) -> GroundedAnswer:
    """The refusal decision and the shown text, from verdicts already given: ``ground_answer``'s
    second half, also used by the sentence-by-sentence checker (rag.grounding.streaming), which
    judges each sentence as soon as it is written."""
    text = text.strip()
    early = _refusal_before_judging(text, settings)
    if early is not None:
        return early
    total = sum(v.weight for v in verdicts)
    if total == 0:
        return _refuse(settings, "the answer makes no checkable statement", verdicts=verdicts)
    fraction = sum(v.weight for v in verdicts if v.support.supported) / total
    if fraction < settings.min_supported_fraction:
        reason = f"only {fraction:.0%} of the answer is supported by the retrieved chunks"
        return _refuse(settings, reason, fraction, verdicts)
    return GroundedAnswer(_with_markers(text, verdicts), False, "supported", fraction, verdicts)


def _refusal_before_judging(text: str, settings: GroundingSettings) -> GroundedAnswer | None:
    if not text:
        return _refuse(settings, "the model returned an empty answer")
    if is_refusal(text):
        return _refuse(settings, "the model said the documents do not contain the answer")
    return None


def judge_sentences(
    sentences: Sequence[str], contexts: Sequence[str], judge: SupportJudge
) -> list[AnswerSentence]:
    """Each sentence (as written, markers included) judged, with the markers it may keep."""
    plain = [strip_markers(s).strip() for s in sentences]
    supports = _judge_many(judge, plain, contexts)
    backed = _backed_markers(sentences, plain, supports, contexts, judge)
    verdicts = []
    for sentence, clean, support, cited in zip(sentences, plain, supports, backed, strict=True):
        evidence = _evidence_marker(support)
        if evidence is not None:
            cited.add(evidence)
        verdict = replace(support, text=clean)  # named even by a judge that leaves text empty
        verdicts.append(AnswerSentence(sentence, verdict, sorted(cited), len(terms(clean).content)))
    return verdicts


def _judge_many(judge: SupportJudge, statements: Sequence[str], contexts: Sequence[str]) -> list[Support]:
    return judge_all(judge, statements, contexts)


def _evidence_marker(support: Support) -> int | None:
    """The 1-based marker of the chunk holding a supported sentence's evidence."""
    if support.supported and support.context_index is not None:
        return support.context_index + 1
    return None


def _backed_markers(
    sentences: Sequence[str],
    plain: Sequence[str],
    supports: Sequence[Support],
    contexts: Sequence[str],
    judge: SupportJudge,
) -> list[set[int]]:
    """Per sentence, the model-written markers whose chunk alone supports it (module docstring).
    Sentences citing the same chunk are judged against it in one call."""
    claims: dict[int, list[int]] = {}  # chunk marker -> sentences that claim it
    for i, (sentence, support) in enumerate(zip(sentences, supports, strict=True)):
        if not support.supported:
            continue
        evidence = _evidence_marker(support)
        for n in set(markers(sentence)):
            if 1 <= n <= len(contexts) and n != evidence:
                claims.setdefault(n, []).append(i)
    kept: list[set[int]] = [set() for _ in sentences]
    for n, claimants in claims.items():
        alone = _judge_many(judge, [plain[i] for i in claimants], [contexts[n - 1]])
        for i, support in zip(claimants, alone, strict=True):
            if support.supported:
                kept[i].add(n)
    return kept


def _with_markers(text: str, verdicts: list[AnswerSentence]) -> str:
    """Rewrite each sentence in place with exactly the markers that passed the checks."""
    out, cursor = [], 0
    for v in verdicts:
        start = text.find(v.raw, cursor)
        if start < 0:  # split_sentences returns substrings; keep the text as is otherwise
            continue
        out.append(text[cursor:start] + with_markers(v))
        cursor = start + len(v.raw)
    out.append(text[cursor:])
    return "".join(out).strip()


def with_markers(v: AnswerSentence) -> str:
    """One sentence as shown: its text without the model's markers, then the kept ones, before
    the final punctuation ("... port 7341 [2].")."""
    body = v.text.rstrip()
    tail = body[-1] if body and body[-1] in ".!?:" else ""
    body = body[: len(body) - len(tail)]
    refs = "".join(f" [{n}]" for n in v.cited)
    return f"{body}{refs}{tail}"


def _refuse(
    settings: GroundingSettings,
    reason: str,
    fraction: float = 0.0,
    verdicts: list[AnswerSentence] | None = None,
) -> GroundedAnswer:
    return GroundedAnswer(settings.refusal_message, True, reason, fraction, verdicts or [])
