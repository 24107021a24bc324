"""What of the retrieved chunks goes into the prompt: the best passages packed into a token budget.

Prompt processing is most of an answer's cost on a CPU (it is compute-bound: every prompt token
goes through the whole model), and a small model answers better from fewer, more relevant
passages than from every chunk retrieved ("context stuffing"). So instead of always sending
``top_k`` whole chunks, the chunks are taken in rank order while they fit into
``generator.context_tokens``; a chunk that does not fit whole is cut down to its sentences that
share most words with the question (kept in their original order), and packing stops when
nothing more fits. The first chunk is always sent, trimmed if it must be.

The grounding check and the citations see exactly the text the model saw (``Passage.text``),
and a citation still points at the whole stored chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.grounding.text import split_sentences, terms
from rag.types import ScoredChunk

# The per-passage label and separators the prompt adds around each passage (rag.prompt).
PASSAGE_OVERHEAD_TOKENS = 12
# Without the generator's tokenizer, a token is about four characters of English text.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk as it is shown to the model: its text, possibly trimmed."""

    hit: ScoredChunk
    text: str

    @property
    def trimmed(self) -> bool:
        return self.text != self.hit.chunk.text


def approximate_tokens(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


def pack(
    question: str,
    hits: Sequence[ScoredChunk],
    budget_tokens: int,
    count_tokens: Callable[[str], int] = approximate_tokens,
) -> list[Passage]:
    """The passages for the prompt; ``budget_tokens <= 0`` sends every hit whole."""
    if budget_tokens <= 0:
        return [Passage(h, h.chunk.text) for h in hits]
    wanted = terms(question).content
    left = budget_tokens
    passages: list[Passage] = []
    for hit in hits:
        room = left - PASSAGE_OVERHEAD_TOKENS
        text = hit.chunk.text
        cost = count_tokens(text)
        if cost > room:
            text = _trim(text, wanted, room, count_tokens)
            cost = count_tokens(text) if text else 0
        if not text:
            if passages:
                break
            text = _cut(hit.chunk.text, room)  # the first passage is always sent
            cost = count_tokens(text)
        passages.append(Passage(hit, text))
        left -= cost + PASSAGE_OVERHEAD_TOKENS
        if left <= PASSAGE_OVERHEAD_TOKENS:
            break
    return passages


def _trim(text: str, wanted: frozenset[str], room: int, count_tokens: Callable[[str], int]) -> str:
    """The sentences sharing most content words with the question that fit into ``room``."""
    if room <= 0:
        return ""
    sentences = split_sentences(text)
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(terms(sentences[i]).content & wanted), i))
    kept: set[int] = set()
    used = 0
    for i in ranked:
        if not terms(sentences[i]).content & wanted:
            break  # a sentence with nothing of the question in it is not worth the tokens
        cost = count_tokens(sentences[i])
        if used + cost <= room:
            kept.add(i)
            used += cost
    return " ".join(sentences[i] for i in sorted(kept))


def _cut(text: str, room: int) -> str:
    return text[: max(room, 1) * CHARS_PER_TOKEN]
