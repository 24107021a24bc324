"""Grounding sentence by sentence, as the draft is written: feed the draft's pieces, get back each
sentence once it is complete and the support judge accepted it, then the final decision.

Only checked text leaves this module, so a client never sees what the judge has not accepted:

- **When a sentence is complete.** ``split_sentences`` decides, exactly as for a finished draft.
  A sentence is complete once a line break follows it, or once the first word after it is
  finished (whitespace after it): one word of look-ahead is what a boundary needs to be final
  (``e. G`` may still become the abbreviation ``e. g.``; ``3.`` may become ``3.0``).
- **An unsupported sentence is withheld**: never shown, and left out of the final answer text
  too, so the sentences shown, joined, are exactly the final answer (``Checked.grounded.answer``)
  whenever it is not refused. Its markers cite nothing.
- **Held back while the answer is failing.** A supported sentence is released only while the
  answer so far passes ``grounding.min_supported_fraction`` (by content words, as
  ``ground_answer`` counts) and has said nothing that reads as a refusal; otherwise it waits, and
  goes out as soon as the answer recovers, or at the end if the answer is kept. So an answer that
  starts badly shows nothing until it is clearly supported.
- **The final decision** is ``rag.grounding.answer.decide`` over the same verdicts: the answer may
  still be refused at the end (the consumer then replaces what it showed by the refusal message);
  sentences already released cannot be taken back, which is why they are held while in doubt.

Every sentence is judged against the same contexts (the passages the prompt had), and its
citations are the markers ``ground_answer`` would give it: numbering agrees between the sentences
and the final answer. With ``defer=True`` nothing is judged until ``finish`` (a judge that runs on
the generator that is still writing the draft cannot run between its tokens).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rag.config import GroundingSettings
from rag.embedding.caching import CachingEmbedder
from rag.grounding.answer import (
    AnswerSentence,
    GroundedAnswer,
    decide,
    is_refusal,
    judge_sentences,
    with_markers,
)
from rag.grounding.support import LexicalSupportJudge
from rag.grounding.text import split_sentences
from rag.protocols import SupportJudge

log = logging.getLogger("rag.grounding.streaming")

# What ends a line for str.splitlines, which split_sentences splits on first.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_NEXT_WORD_DONE = re.compile(r"\s*\S+\s")


@dataclass(frozen=True)
class ShownSentence:
    """A checked, supported sentence as shown: ``text`` starts with what separates it from the
    sentence shown before it (a space, a line break, a list bullet; nothing for the first), so
    joining the shown sentences gives the answer."""

    text: str
    cited: list[int]  # 1-based context numbers its [n] markers refer to


@dataclass(frozen=True)
class Checked:
    """The end of a checked draft: the sentences released only now, and the decision."""

    shown: list[ShownSentence]
    grounded: GroundedAnswer


class SentenceChecker:
    """Feed draft pieces in order (``feed``), then call ``finish`` once. Not thread-safe."""

    def __init__(
        self,
        contexts: Sequence[str],
        judge: SupportJudge,
        settings: GroundingSettings,
        *,
        defer: bool = False,
    ) -> None:
        self.contexts = list(contexts)
        self.judge = _with_cached_contexts(judge)
        self.settings = settings
        self.defer = defer
        self.seconds = 0.0  # time spent checking (splitting and judging)
        self._text = ""
        self._cursor = 0  # end of the last judged sentence in _text
        self._verdicts: list[AnswerSentence] = []
        self._held: list[ShownSentence] = []
        self._shown: list[ShownSentence] = []
        self._refusal_seen = False

    @property
    def text(self) -> str:
        """The draft so far."""
        return self._text

    def feed(self, piece: str) -> list[ShownSentence]:
        """Add a piece of the draft; returns the sentences it lets out (often none)."""
        self._text += piece
        if self.defer:
            return []
        t0 = time.perf_counter()
        try:
            return self._check(final=False)
        finally:
            self.seconds += time.perf_counter() - t0

    def finish(self) -> Checked:
        """Judge what is left (a last sentence need not end with a full stop) and decide."""
        t0 = time.perf_counter()
        try:
            released = self._check(final=True)
            self._warn_if_split_differs()
            grounded = decide(self._text, self._verdicts, self.settings)
            if grounded.refused:
                return Checked([], grounded)
            released += self._take_held()
            return Checked(released, self._shown_answer(grounded))
        finally:
            self.seconds += time.perf_counter() - t0

    def _check(self, *, final: bool) -> list[ShownSentence]:
        pending = self._complete_sentences(final)
        if not pending:
            return []
        spans = [span for span, _ in pending]
        verdicts = judge_sentences([raw for _, raw in pending], self.contexts, self.judge)
        released: list[ShownSentence] = []
        for (start, end), verdict in zip(spans, verdicts, strict=True):
            released += self._add(verdict, start, end)
        return released

    def _complete_sentences(self, final: bool) -> list[tuple[tuple[int, int], str]]:
        """The sentences after the judged ones that are complete: (span in the draft, raw)."""
        found, cursor = [], self._cursor
        for sentence in split_sentences(self._text)[len(self._verdicts) :]:
            start = self._find(sentence, cursor)
            if start < 0:
                break
            end = start + len(sentence)
            if not final and not _followed_by_boundary(self._text[end:]):
                break
            found.append(((start, end), self._text[start:end]))
            cursor = end
        return found

    def _warn_if_split_differs(self) -> None:
        """The sentences judged one by one should be those of the whole draft (the look-ahead
        rule); if the splitter ever disagrees, say so: a sentence was shown early or cut."""
        whole = [s.lower() for s in split_sentences(self._text)]
        if [v.raw.lower() for v in self._verdicts] != whole:
            log.warning(
                "sentences checked as they came differ from the whole draft's (%d vs %d)",
                len(self._verdicts),
                len(whole),
            )

    def _find(self, sentence: str, cursor: int) -> int:
        """Where a sentence starts in the draft. split_sentences restores an abbreviation in
        lower case ("E.g." comes back as "e.g."), so a miss is retried case-insensitively."""
        start = self._text.find(sentence, cursor)
        lowered = self._text.lower()
        if start < 0 and len(lowered) == len(self._text):
            start = lowered.find(sentence.lower(), cursor)
        return start

    def _add(self, verdict: AnswerSentence, start: int, end: int) -> list[ShownSentence]:
        """Record one judged sentence; returns what may be shown now."""
        self._verdicts.append(verdict)
        between, self._cursor = self._text[self._cursor : start], end
        if is_refusal(verdict.raw) or is_refusal(verdict.text):
            self._refusal_seen = True
        if not verdict.support.supported:  # withheld, and its separator with it
            return []
        # The first sentence shown keeps a list bullet before it, not the leading whitespace.
        sep = between if (self._shown or self._held) else between.lstrip()
        self._held.append(ShownSentence(sep + with_markers(verdict), list(verdict.cited)))
        return self._take_held() if self._passing() else []

    def _passing(self) -> bool:
        """Whether the answer so far would be kept (the final decision's rule, applied early)."""
        total = sum(v.weight for v in self._verdicts)
        if self._refusal_seen or total == 0:
            return False
        supported = sum(v.weight for v in self._verdicts if v.support.supported)
        return supported / total >= self.settings.min_supported_fraction

    def _take_held(self) -> list[ShownSentence]:
        released, self._held = self._held, []
        self._shown += released
        return released

    def _shown_answer(self, grounded: GroundedAnswer) -> GroundedAnswer:
        """The kept answer is exactly the shown sentences (withheld ones left out)."""
        withheld = sum(not v.support.supported for v in self._verdicts)
        reason = (
            grounded.reason
            if not withheld
            else f"{grounded.reason}; {withheld} unsupported sentence(s) withheld"
        )
        return replace(grounded, answer="".join(s.text for s in self._shown), reason=reason)


def _followed_by_boundary(rest: str) -> bool:
    """Whether the text after a sentence makes its end final (module docstring)."""
    return bool(_LINE_BREAK.search(rest)) or bool(_NEXT_WORD_DONE.match(rest))


def _with_cached_contexts(judge: SupportJudge) -> SupportJudge:
    """The lexical judge embeds every context sentence on each call; judged sentence by sentence,
    one answer would embed its passages once per sentence. A copy over a caching embedder embeds
    them once per answer (the verdicts are the same)."""
    if not isinstance(judge, LexicalSupportJudge) or judge.embedder is None:
        return judge
    if isinstance(judge.embedder, CachingEmbedder):
        return judge
    return LexicalSupportJudge(judge.settings, CachingEmbedder(judge.embedder))
