"""Multi-turn questions: a follow-up rewritten into a standalone question before retrieval.

Retrieval sees one query. "And where is its configuration file?" alone finds nothing useful; the
conversation says what "its" is. ``standalone_question`` turns the last question and the messages
before it into one question that names its subject, by one of ``conversation.condense``:

* ``generator``: one short call with the condense prompt (``rag.prompt.build_condense_messages``),
  greedy, at most ``conversation.condense_max_tokens`` tokens, one line;
* ``concat``: the previous user message put before the follow-up (no model call: retrieval then
  sees both subjects' words);
* ``none``: the question as it is.

A history of a single message is always concatenated (there is only one thing "it" can refer to,
so a model call buys little), and a model rewrite that comes back empty, cut at its token limit,
the same as an earlier user message, or without any word of the conversation that the follow-up
lacked (it resolved nothing) falls back to ``concat``. The history the rewrite sees is bounded by
``conversation.max_history_messages`` and ``conversation.max_history_tokens``. Usable on its own:
the chat route and ``/v1/query``'s history both call it, inside the generation slot.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rag.config import ConversationSettings, Settings
from rag.context import approximate_tokens
from rag.grounding.text import STOPWORDS, stem, tokens
from rag.prompt import build_condense_messages
from rag.protocols import GenerationParams, Generator, Message, TokenCounter

ROLES = ("user", "assistant")  # what a rewrite reads; system and tool messages say nothing about "it"
_MARKER = re.compile(r"\s*\[\d+\]")  # an answer's citation markers: noise to the rewrite
# Lead-ins the model sometimes writes before the question itself ("Rewritten question: ...").
_LEAD_IN = re.compile(r"^\s*(?:\*\*)?(?:rewritten|standalone|follow-up)?\s*question\s*:\s*(?:\*\*)?\s*", re.I)
_QUOTES = "\"'`“”"


@dataclass(frozen=True)
class Rewrite:
    """What was searched for: ``question`` (standalone), made from ``original`` by ``method``."""

    question: str
    original: str
    method: str  # "none" | "concat" | "generator"
    reason: str  # why this method, for people debugging
    usage: dict[str, float] = field(default_factory=dict)  # prompt/completion tokens of the model call
    seconds: float = 0.0

    @property
    def rewritten(self) -> bool:
        return self.question != self.original


def standalone_question(
    question: str, history: Sequence[Message], generator: Generator | None, settings: Settings
) -> Rewrite:
    """``question`` made standalone from ``history`` (the messages before it, oldest first).

    ``generator`` may be None (then ``generator`` falls back to ``concat``). Raises what the
    generator raises (a remote one's GenerationError): a failing model fails the answer anyway."""
    config = settings.conversation
    counter = generator.count_tokens if isinstance(generator, TokenCounter) else approximate_tokens
    recent = bounded_history(history, config, counter)
    if not recent:
        return Rewrite(question, question, "none", "no earlier message")
    if config.condense == "none":
        return Rewrite(question, question, "none", "conversation.condense is none")
    if config.condense == "concat":
        return concatenated(question, recent, "conversation.condense is concat")
    if len(recent) == 1:
        return concatenated(question, recent, "a history of one message")
    if generator is None:
        return concatenated(question, recent, "no generator")
    return condensed(question, recent, generator, config)


def bounded_history(
    history: Sequence[Message], config: ConversationSettings, count_tokens: Callable[[str], int]
) -> list[Message]:
    """The user and assistant messages the rewrite sees: the last ``max_history_messages``,
    without citation markers, newest first within ``max_history_tokens``. A message is cut (at a
    word) to half the budget at most, so one long answer never crowds out the question before it
    (which usually names the subject); the oldest kept one is cut to what is left."""
    n = config.max_history_messages
    kept: list[Message] = []
    budget = config.max_history_tokens
    for m in reversed(_readable(history)[-n:] if n else []):
        if budget <= 0:
            break
        text = _cut(m["content"], min(budget, config.max_history_tokens // 2), count_tokens)
        if text:
            kept.append({"role": m["role"], "content": text})
        budget -= count_tokens(text)
    return kept[::-1]


def concatenated(question: str, recent: Sequence[Message], reason: str) -> Rewrite:
    """The previous user message (else the last message) before the follow-up."""
    earlier = [m for m in recent if m["role"] == "user"] or list(recent)
    previous = earlier[-1]["content"].strip()
    return Rewrite(f"{previous} {question.strip()}", question, "concat", reason)


def condensed(
    question: str, recent: list[Message], generator: Generator, config: ConversationSettings
) -> Rewrite:
    """The generator's rewrite of ``question`` from ``recent`` (already bounded); ``concat`` when
    the rewrite comes back empty or cut at ``condense_max_tokens``."""
    params = GenerationParams(max_tokens=config.condense_max_tokens, temperature=0.0, stop=("\n",))
    t0 = time.perf_counter()
    out = generator.generate(build_condense_messages(question, recent), params)
    seconds = round(time.perf_counter() - t0, 3)
    usage = {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens}
    text = clean(out.text)
    problem = _unusable(text, out.finish_reason, question, recent)
    if problem:
        fallback = concatenated(question, recent, f"the generator gave {problem}")
        return Rewrite(fallback.question, question, "concat", fallback.reason, usage, seconds)
    return Rewrite(text, question, "generator", "rewritten by the generator", usage, seconds)


def _unusable(text: str, finish_reason: str, question: str, recent: Sequence[Message]) -> str | None:
    """Why a rewrite cannot be used, or None. A small model sometimes repeats the earlier question
    (which would answer that one again) or drops the follow-up's "its" without naming what it
    meant ("Where is the configuration file?"): a rewrite that adds no content word of the
    conversation to the follow-up has resolved nothing."""
    if not text:
        return "an empty rewrite"
    if finish_reason == "length":
        return "a rewrite cut at condense_max_tokens"
    if any(_words(text) == _words(m["content"]) for m in recent if m["role"] == "user"):
        return "the earlier question again"
    conversation = _content(" ".join(m["content"] for m in recent))
    if not (_content(text) - _content(question)) & conversation:
        return "a rewrite that names nothing from the conversation"
    return None


def _content(text: str) -> set[str]:
    """Stemmed content words (the grounding check's tokens, without stopwords)."""
    return {stem(t) for t in tokens(text) if t.lower() not in STOPWORDS}


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def clean(text: str) -> str:
    """The rewrite as a bare question: first line, no lead-in, no surrounding quotes."""
    line = text.strip().split("\n", 1)[0]
    return _LEAD_IN.sub("", line).strip().strip(_QUOTES).strip()


def _readable(history: Sequence[Message]) -> list[Message]:
    out: list[Message] = []
    for m in history:
        text = _MARKER.sub("", m.get("content") or "").strip()
        if m.get("role") in ROLES and text:
            out.append({"role": m["role"], "content": text})
    return out


def _cut(text: str, budget: int, count_tokens: Callable[[str], int]) -> str:
    """``text`` if it fits in ``budget`` tokens, else its longest start of whole words that does."""
    if count_tokens(text) <= budget:
        return text
    words = text.split()
    lo, hi = 0, len(words)  # binary search: the most words whose join fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(" ".join(words[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])
