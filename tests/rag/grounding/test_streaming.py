"""The sentence-by-sentence checker (rag/grounding/streaming.py) with a declared fake judge.

``WordJudge`` is a fake: a statement is supported when every word of four letters or more is in
one context. It stands in for the real judge (whose verdicts are tested in test_grounding.py) so
these tests are about the checker's own decisions: when a sentence is complete, what is
withheld or held, what the final answer is. The real judge and generator run the same path in
tests/rag/test_checked_stream.py and tests/api/test_streaming_e2e.py.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.config import GroundingSettings
from rag.grounding.answer import ground_answer
from rag.grounding.streaming import SentenceChecker, ShownSentence
from rag.grounding.text import split_sentences
from rag.protocols import Support

CONTEXTS = [
    "Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks.",
    "The zephyr-relay daemon listens on TCP port 7341, e.g. for remote copies.",
    "Snapshots live in /var/lib/zephyr/snapshots.",
]
SETTINGS = GroundingSettings()
REFUSAL = SETTINGS.refusal_message


class WordJudge:
    """A declared fake SupportJudge (module docstring): supported when every word of 4+ letters
    is found in one context, which becomes the evidence (``context_index``)."""

    def __init__(self) -> None:
        self.judged: list[str] = []

    def judge(self, statement: str, contexts: Sequence[str]) -> Support:
        self.judged.append(statement)
        words = {w.lower() for w in re.findall(r"[A-Za-z0-9/]{4,}", statement)}
        for i, context in enumerate(contexts):
            if words <= {w.lower() for w in re.findall(r"[A-Za-z0-9/]{4,}", context)}:
                return Support(text=statement, supported=True, score=1.0, context_index=i)
        return Support(text=statement, supported=False, score=0.0)


def check(pieces: Sequence[str], *, defer: bool = False) -> tuple[list[list[ShownSentence]], object]:
    """Feed the pieces; returns what each feed released (then what finish released), and the
    final GroundedAnswer."""
    checker = SentenceChecker(CONTEXTS, WordJudge(), SETTINGS, defer=defer)
    released = [checker.feed(p) for p in pieces]
    end = checker.finish()
    return [*released, end.shown], end.grounded


def words(draft: str) -> list[str]:
    """The draft in pieces of one word and the whitespace after it, as a model streams it."""
    return re.findall(r"\S+\s*", draft)


def texts(released: list[list[ShownSentence]]) -> list[str]:
    return [s.text for batch in released for s in batch]


def test_a_sentence_split_across_pieces_is_released_once_the_next_word_is_written() -> None:
    pieces = ["Zephyr keeps daily snap", "shots for 14 days. Weekly", " snapshots for 8 weeks."]
    released, grounded = check(pieces)
    assert released[0] == [] and released[1] == []  # "Weekly" may still be a longer word
    assert [s.text for s in released[2]] == ["Zephyr keeps daily snapshots for 14 days [1]."]
    assert [s.text for s in released[3]] == [" Weekly snapshots for 8 weeks [1]."]
    assert not grounded.refused
    assert grounded.answer == "".join(texts(released))


def test_an_abbreviation_does_not_end_a_sentence() -> None:
    draft = (
        "The relay listens on port 7341, e.g. For remote copies. Snapshots live in /var/lib/zephyr/snapshots."
    )
    released, grounded = check(list(draft))  # one character at a time
    assert texts(released) == [
        "The relay listens on port 7341, e.g. For remote copies [2].",
        " Snapshots live in /var/lib/zephyr/snapshots [3].",
    ]
    assert grounded.answer == "".join(texts(released))


def test_an_abbreviation_keeps_its_case() -> None:
    """split_sentences gives abbreviations back in lower case ("E.g." as "e.g."); the sentence
    shown is the model's own text."""
    released, _ = check(
        words("The relay listens on port 7341, E.g. For remote copies. Snapshots live in /var.")
    )
    assert texts(released)[0] == "The relay listens on port 7341, E.g. For remote copies [2]."


def test_a_last_sentence_without_a_full_stop_is_released_at_the_end() -> None:
    released, grounded = check(["Snapshots live in ", "/var/lib/zephyr/snapshots"])
    assert released[:2] == [[], []]
    assert [s.text for s in released[2]] == ["Snapshots live in /var/lib/zephyr/snapshots [3]"]
    assert [s.cited for s in released[2]] == [[3]]
    assert not grounded.refused and grounded.cited == [3]


def test_an_unsupported_sentence_in_the_middle_is_withheld_from_the_stream_and_the_answer() -> None:
    draft = (
        "Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks. "
        "It encrypts them. "
        "The zephyr-relay daemon listens on TCP port 7341 for remote copies."
    )
    released, grounded = check(words(draft))
    shown = texts(released)
    assert shown == [
        "Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks [1].",
        " The zephyr-relay daemon listens on TCP port 7341 for remote copies [2].",
    ]
    assert not grounded.refused and "1 unsupported sentence(s) withheld" in grounded.reason
    assert grounded.answer == "".join(shown)
    assert "encrypts" not in grounded.answer
    assert [v.support.supported for v in grounded.sentences] == [True, False, True]


def test_a_wholly_unsupported_answer_ends_in_a_refusal_with_nothing_shown() -> None:
    draft = "Zephyr encrypts snapshots with AES-256. The key lives in a hardware module."
    released, grounded = check(list(draft))
    assert texts(released) == []
    assert grounded.refused and grounded.answer == REFUSAL


def test_supported_sentences_wait_while_the_answer_so_far_would_be_refused() -> None:
    """After a long unsupported first sentence, a short supported one is held (showing it would
    likely be retracted); it goes out once enough supported content follows."""
    draft = (
        "Zephyr encrypts every snapshot with a master key. "
        "Snapshots live in /var/lib/zephyr/snapshots. "
        "Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks. "
        "The zephyr-relay daemon listens on TCP port 7341 for remote copies. "
        "Zephyr keeps weekly snapshots for 8 weeks."
    )
    checker = SentenceChecker(CONTEXTS, WordJudge(), SETTINGS)
    released = [checker.feed(w) for w in words(draft)]
    first = next(i for i, batch in enumerate(released) if batch)
    assert len(released[first]) >= 2  # the held sentence and the one that made the answer pass
    end = checker.finish()
    shown = [s.text for batch in [*released, end.shown] for s in batch]
    assert not end.grounded.refused and end.grounded.answer == "".join(shown)
    assert shown[0] == "Snapshots live in /var/lib/zephyr/snapshots [3]."  # no leading space


def test_nothing_more_is_released_after_the_model_says_it_cannot_answer() -> None:
    draft = (
        "Snapshots live in /var/lib/zephyr/snapshots. The documents do not mention the cipher. "
        "Snapshots live in /var/lib/zephyr/snapshots."
    )
    released, grounded = check(words(draft))
    assert texts(released) == ["Snapshots live in /var/lib/zephyr/snapshots [3]."]
    assert grounded.refused and grounded.answer == REFUSAL


def test_list_items_keep_their_bullets_and_line_breaks() -> None:
    draft = "- Snapshots live in /var/lib/zephyr/snapshots.\n- The relay listens on port 7341.\n"
    released, grounded = check([draft[:20], draft[20:50], draft[50:]])
    assert texts(released) == [
        "- Snapshots live in /var/lib/zephyr/snapshots [3].",
        "\n- The relay listens on port 7341 [2].",
    ]
    assert grounded.answer == "".join(texts(released))


def test_a_model_marker_is_kept_only_when_its_chunk_alone_supports_the_sentence() -> None:
    released, grounded = check(["The relay listens on port 7341 [2] [1]."])
    shown = [(s.text, s.cited) for batch in released for s in batch]
    assert shown == [("The relay listens on port 7341 [2].", [2])]
    assert grounded.cited == [2]


def test_deferred_checking_judges_nothing_until_the_end() -> None:
    judge = WordJudge()
    checker = SentenceChecker(CONTEXTS, judge, SETTINGS, defer=True)
    assert checker.feed("Snapshots live in /var/lib/zephyr/snapshots. ") == []
    assert checker.feed("The relay listens on port 7341. More") == [] and judge.judged == []
    end = checker.finish()
    assert [s.text for s in end.shown] == [
        "Snapshots live in /var/lib/zephyr/snapshots [3].",
        " The relay listens on port 7341 [2].",
    ]
    assert not end.grounded.refused and len(judge.judged) >= 3  # all three sentences, at the end


SUPPORTED_DRAFTS = [
    "Zephyr keeps daily snapshots for 14 days. Weekly snapshots for 8 weeks.",
    "The relay listens on port 7341, e.g. For remote copies.\n\n"
    "1. Snapshots live in /var/lib/zephyr/snapshots",
    "  Snapshots live in /var/lib/zephyr/snapshots [3].  The relay listens on TCP port 7341 [1].",
    "Zephyr keeps weekly snapshots for 8 weeks! Daily snapshots: 14 days",
]


@pytest.mark.parametrize("draft", SUPPORTED_DRAFTS)
def test_a_supported_answer_is_the_same_as_grounding_the_whole_draft(draft: str) -> None:
    """Checked one character at a time, a wholly supported draft gives ground_answer's answer,
    its sentences and its citations."""
    released, grounded = check(list(draft))
    whole = ground_answer(draft, CONTEXTS, WordJudge(), SETTINGS)
    assert not whole.refused and all(v.support.supported for v in whole.sentences)
    assert "".join(texts(released)) == grounded.answer == whole.answer
    assert [v.raw for v in grounded.sentences] == [v.raw for v in whole.sentences]
    assert grounded.cited == whole.cited


@settings(max_examples=60, deadline=None)
@given(
    draft=st.sampled_from(
        [*SUPPORTED_DRAFTS, "See e. G. the relay. It listens on 7341. Version 3.0 is out."]
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=12),
)
def test_however_the_draft_is_cut_into_pieces_the_sentences_are_those_of_the_whole(
    draft: str, cuts: list[int]
) -> None:
    points = sorted({min(c, len(draft)) for c in cuts} | {0, len(draft)})
    pieces = [draft[a:b] for a, b in itertools.pairwise(points)]
    checker = SentenceChecker(CONTEXTS, WordJudge(), SETTINGS)
    for piece in pieces:
        checker.feed(piece)
    grounded = checker.finish().grounded
    assert [v.raw.lower() for v in grounded.sentences] == [s.lower() for s in split_sentences(draft)]
