from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rag.grounding.statements import split_clauses, split_statements


def test_sentences_and_clauses() -> None:
    text = (
        "APT uses CMake to build the sources, and you can use ninja instead of make [1]. Red, white and blue."
    )
    assert split_statements(text) == [
        "APT uses CMake to build the sources",
        "you can use ninja instead of make.",
        "Red, white and blue.",
    ]


def test_semicolons_split_only_long_clauses() -> None:
    assert split_clauses("The root user has UID 0; the nobody user has UID 65534.") == [
        "The root user has UID 0",
        "the nobody user has UID 65534.",
    ]
    assert split_clauses("Fast; cheap.") == ["Fast; cheap."]
    assert split_clauses("It is fast, but slow to start.") == ["It is fast, but slow to start."]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_statements_are_non_empty_and_come_from_the_text(text: str) -> None:
    """Splitting only removes (markers, bullets, joining words): the statements' characters are a
    subsequence of the answer's, and no statement is empty."""
    out = split_statements(text)
    assert all(s.strip() == s and s for s in out)
    remaining = iter("".join(ch for ch in text if ch.isalnum()))
    assert all(ch in remaining for ch in "".join(ch for s in out for ch in s if ch.isalnum()))
