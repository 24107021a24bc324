"""Which `[n]` markers a grounded answer keeps: the real embedder and LexicalSupportJudge decide.

A marker the model wrote is kept only when its chunk alone supports the sentence; the chunk that
holds the evidence is always cited."""

from __future__ import annotations

import pytest

from rag.config import GroundingSettings
from rag.grounding.answer import ground_answer
from rag.grounding.support import LexicalSupportJudge

RELAY = (
    "The zephyr-relay daemon sends snapshots to a remote site. It listens on TCP port 7341 and "
    "accepts connections only from hosts listed in /etc/zephyr/relay.allow."
)
RETENTION = "By default Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks."
SUMMARY = "Zephyr keeps daily snapshots for 14 days."


@pytest.fixture(scope="module")
def judge(embedder) -> LexicalSupportJudge:
    return LexicalSupportJudge(GroundingSettings(), embedder)


def test_a_marker_on_a_chunk_that_does_not_support_the_sentence_is_replaced(judge) -> None:
    """The retention fact is in chunk 2; the model cited chunk 1 (the relay)."""
    g = ground_answer(
        "Zephyr keeps daily snapshots for 14 days [1].", [RELAY, RETENTION], judge, GroundingSettings()
    )
    assert not g.refused
    assert g.answer == "Zephyr keeps daily snapshots for 14 days [2]."
    assert g.sentences[0].cited == [2] and g.cited == [2]


def test_a_marker_on_a_chunk_that_also_supports_the_sentence_is_kept(judge) -> None:
    contexts = [SUMMARY, RETENTION]
    draft = "Zephyr keeps daily snapshots for 14 days [2]."
    g = ground_answer(draft, contexts, judge, GroundingSettings())
    assert g.sentences[0].support.context_index == 0  # the evidence is chunk 1, the model cited 2
    assert g.answer == "Zephyr keeps daily snapshots for 14 days [1] [2]."
    assert g.cited == [1, 2]


def test_each_sentence_keeps_only_its_own_backed_markers(judge) -> None:
    draft = "The relay listens on TCP port 7341 [2]. Weekly snapshots are kept for 8 weeks [1] [2]."
    g = ground_answer(draft, [RELAY, RETENTION], judge, GroundingSettings())
    assert g.answer == "The relay listens on TCP port 7341 [1]. Weekly snapshots are kept for 8 weeks [2]."
    assert [s.cited for s in g.sentences] == [[1], [2]]


def test_an_unsupported_sentence_loses_its_markers(judge) -> None:
    """Three supported sentences carry the answer past min_supported_fraction; the fourth
    invents a cipher and must not borrow chunk 1's authority."""
    draft = (
        "The relay listens on TCP port 7341 [1]. Daily snapshots are kept for 14 days [2]. "
        "Weekly snapshots are kept for 8 weeks [2]. The relay uses AES-256 [1]."
    )
    g = ground_answer(draft, [RELAY, RETENTION], judge, GroundingSettings(min_supported_fraction=0.5))
    assert not g.refused
    last = g.sentences[-1]
    assert not last.support.supported and last.cited == []
    assert g.answer.endswith("The relay uses AES-256.")
