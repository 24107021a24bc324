"""Atomic statements without an LLM: sentences, then clauses joined by ';' or ', and/but/...'.

RAGAS asks an LLM to rewrite an answer as short standalone claims. That costs a generation per
sample and fails on malformed JSON with small local models, so we split in code instead: a
sentence is one statement unless it joins two clauses that could each stand alone (both sides at
least ``MIN_CLAUSE_WORDS`` words), in which case each clause is judged on its own. That way one
invented detail in a long compound sentence costs only its clause, not the whole sentence.
Pronouns are not resolved (the support judge matches content words, which pronouns do not carry).
"""

from __future__ import annotations

import re

from rag.grounding.text import split_sentences, strip_markers

MIN_CLAUSE_WORDS = 4
_CLAUSE_BREAK = re.compile(r"\s*;\s+|,\s+(?=(?:and|but|while|whereas)\s)", re.IGNORECASE)
_LEADING_CONJUNCTION = re.compile(r"^(?:and|but|while|whereas)\s+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9_/.-]+")


def split_statements(text: str) -> list[str]:
    """The answer's statements, citation markers removed, in order."""
    out: list[str] = []
    for sentence in split_sentences(strip_markers(text)):
        out.extend(split_clauses(sentence))
    return [s for s in out if s]


def split_clauses(sentence: str) -> list[str]:
    """Split at ';' and ', and/but/while/whereas' when both sides are long enough to be claims."""
    pieces = _CLAUSE_BREAK.split(sentence.strip())
    clauses: list[str] = []
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        body = _LEADING_CONJUNCTION.sub("", piece)
        if clauses and (_words(body) < MIN_CLAUSE_WORDS or _words(clauses[-1]) < MIN_CLAUSE_WORDS):
            clauses[-1] = _join(clauses[-1], piece)  # too short to stand alone: keep it attached
        else:
            clauses.append(body)
    return clauses


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _join(left: str, right: str) -> str:
    sep = "; " if not _LEADING_CONJUNCTION.match(right) else ", "
    return f"{left.rstrip(';, ')}{sep}{right}"
