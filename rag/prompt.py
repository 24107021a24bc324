"""The chat prompt: numbered chunks, answer only from them, cite [n], say when they lack it."""

from __future__ import annotations

from collections.abc import Sequence

from rag.protocols import Message
from rag.types import ScoredChunk

SYSTEM = (
    "You answer questions using only the numbered context passages. "
    "Answer in one to three short sentences and cite the passages you used as [1], [2]. "
    "Copy names, numbers, commands and paths exactly as they appear in the passages. "
    "If the passages do not contain the answer, reply only: "
    '"The documents do not contain the answer."'
)


def label(chunk: ScoredChunk) -> str:
    where = chunk.chunk.source + (f", page {chunk.chunk.page}" if chunk.chunk.page else "")
    return f"({where})"


def build_messages(question: str, chunks: Sequence[ScoredChunk]) -> list[Message]:
    context = "\n\n".join(f"[{i}] {label(c)}\n{c.chunk.text}" for i, c in enumerate(chunks, 1))
    user = f"Context passages:\n\n{context}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
