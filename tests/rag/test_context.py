"""The context packer (rag/context.py): the best passages into a token budget, the last one cut
to its sentences that share most words with the question. Real chunk objects, counted with the
packer's character-based fallback so the expected sizes are exact."""

from __future__ import annotations

from rag.context import PASSAGE_OVERHEAD_TOKENS, approximate_tokens, pack
from rag.types import Chunk, ScoredChunk

QUESTION = "Which TCP port does the zephyr-relay daemon listen on?"
RELAY = (
    "Zephyr copies directories into snapshots. The zephyr-relay daemon listens on TCP port 7341. "
    "Transfers are resumed automatically. Logs go to the system journal."
)
OTHER = "Retention keeps daily snapshots for 14 days and weekly snapshots for 8 weeks."


def _hit(text: str, n: int) -> ScoredChunk:
    chunk = Chunk(f"doc{n}", f"doc{n}.md", None, 0, len(text), text, id=n)
    return ScoredChunk(chunk, score=1.0 - n / 10, dense_score=1.0 - n / 10)


HITS = [_hit(RELAY, 1), _hit(OTHER, 2), _hit(OTHER + " Again.", 3)]


def test_no_budget_sends_every_chunk_whole() -> None:
    passages = pack(QUESTION, HITS, 0)
    assert [p.text for p in passages] == [h.chunk.text for h in HITS]
    assert not any(p.trimmed for p in passages)


def test_a_large_budget_sends_every_chunk_whole() -> None:
    assert [p.text for p in pack(QUESTION, HITS, 10_000)] == [h.chunk.text for h in HITS]


def test_the_budget_holds_and_packing_stops_when_full() -> None:
    budget = approximate_tokens(RELAY) + approximate_tokens(OTHER) + 2 * PASSAGE_OVERHEAD_TOKENS
    passages = pack(QUESTION, HITS, budget)
    assert [p.hit.chunk.id for p in passages] == [1, 2]
    used = sum(approximate_tokens(p.text) + PASSAGE_OVERHEAD_TOKENS for p in passages)
    assert used <= budget


def test_a_chunk_that_does_not_fit_keeps_its_sentences_about_the_question() -> None:
    passages = pack(QUESTION, HITS, 40)  # room for about one sentence of the first chunk
    assert len(passages) == 1 and passages[0].trimmed
    assert "7341" in passages[0].text and "journal" not in passages[0].text
    assert passages[0].hit is HITS[0]  # a citation still points at the whole stored chunk


def test_the_first_chunk_is_always_sent() -> None:
    passages = pack("unrelated words entirely", HITS, 5)
    assert len(passages) == 1 and passages[0].text


def test_the_generators_own_counter_is_used() -> None:
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return 1

    pack(QUESTION, HITS, 100, count)
    assert RELAY in counted
