"""The chat prompt: numbered chunks, answer only from them, cite [n], say when they lack it."""

from __future__ import annotations

from collections.abc import Sequence

from rag.context import Passage
from rag.protocols import Message
from rag.types import ScoredChunk

# Worded by measurement on the default 1.5B model: a stricter "reply only: <refusal>" made it
# refuse questions whose answer was in passage [1]; this softer form answers those and still
# refuses many absent ones. Refusal and citations are decided in code either way (rag.grounding).
SYSTEM = (
    "Answer the question using only the numbered context passages. "
    "Be brief: one or two sentences. Cite the passages you use like [1]. "
    "If the passages do not answer the question, say that the documents do not contain the answer."
)


def label(chunk: ScoredChunk) -> str:
    name = chunk.chunk.source.rsplit("/", 1)[-1]  # the file name; full paths only distract the model
    where = name + (f", page {chunk.chunk.page}" if chunk.chunk.page else "")
    return f"({where})"


def build_messages(question: str, passages: Sequence[Passage]) -> list[Message]:
    """The system prompt (the same for every question, so its state can be reused) and the
    numbered passages with the question."""
    context = "\n\n".join(f"[{i}] {label(p.hit)}\n{p.text}" for i, p in enumerate(passages, 1))
    user = f"Context passages:\n\n{context}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# The generator reranker's question (rag.retrieval.rerank.GeneratorReranker), read as P(yes) from
# the next-token logits. Short on purpose: every word is prefill paid once per candidate passage.
# The question comes before the passage so that, for one query, every candidate's prompt shares
# the system prompt *and* the question as a token prefix, which llama.cpp computes only once.
RELEVANCE_INSTRUCTION = "Does the passage answer the question? Answer yes or no."


def build_relevance_messages(question: str, passage: str) -> list[Message]:
    """The answer's own system prompt (its KV state is already computed at load and stays valid
    for the answer after reranking, so prefix reuse is not broken), then the question, one
    passage and the yes/no instruction."""
    user = f"Question: {question}\n\nPassage:\n{passage}\n\n{RELEVANCE_INSTRUCTION}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# The condense prompt of multi-turn questions (rag.conversation): a follow-up rewritten into a
# standalone question before retrieval. Like the relevance question, it is sent under the answer's
# own system prompt, so llama.cpp keeps that prefix's state for the answer that follows; the
# instruction comes last, after the conversation. Chosen by bench/condense.py (results/condense.md):
# of the wordings tried, this one most often kept what the follow-up asks (18/19) while naming its
# subject; an example in the prompt made the 1.5B model copy the follow-up unchanged more often, and
# a system prompt of its own did no better while costing the answer its cached prefix.
CONDENSE_INSTRUCTION = (
    "Rewrite the follow-up question as one standalone question: keep what it asks, and replace "
    "words such as it, its, they, there, one or that with what they refer to in the conversation "
    "above. Do not answer it and do not repeat an earlier question. Reply with the rewritten "
    "question only."
)


def build_condense_messages(
    question: str, history: Sequence[Message], instruction: str = CONDENSE_INSTRUCTION
) -> list[Message]:
    """The answer's system prompt, then the conversation (oldest first), the follow-up and the
    instruction to rewrite it (another ``instruction`` only for measuring alternatives)."""
    turns = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in history)
    user = f"Conversation:\n{turns}\n\nFollow-up question: {question}\n\n{instruction}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
