"""Text helpers for grounding: sentences, content terms, and the "critical" terms (numbers, paths,
commands, identifiers, names) whose absence from the context is the usual sign of a hallucination.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import Stemmer

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each either else ever few for
    from further had has have having he her here hers herself him himself his how however i if in
    into is it its itself just let may me might more most must my myself neither no nor not now of
    off on once one only or other our ours ourselves out over own per same shall she should so some
    such than that the their theirs them themselves then there these they this those through thus
    to too under until up upon us use used uses using very via was we were what when where whether
    which while who whom whose why will with within without would yet you your yours yourself
    yourselves answer based context document documents according following given specified
    mentioned stated described passage passages provided
    """.split()
)

_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "no.", "fig.", "e. g.", "i. e.")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[`*]?[A-Z0-9])")
_MARKER = re.compile(r"\s*\[(\d{1,3})\]")
_TOKEN = re.compile(r"(?:--?|/|~/)?[A-Za-z0-9_][A-Za-z0-9_./:+#-]*[A-Za-z0-9_+#/]|[A-Za-z0-9]")
_ABBREVIATION_TOKENS = frozenset(a.rstrip(".").replace(" ", "") for a in _ABBREVIATIONS)
_NUMBER = re.compile(r"^\d+(?:[.,:]\d+)*$")


def split_sentences(text: str) -> list[str]:
    """Sentences and list items; markdown bullets and numbered steps count as sentences."""
    out: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", line).strip()
        if line:
            out.extend(s.strip() for s in _split_line(line) if s.strip())
    return out


def _split_line(line: str) -> list[str]:
    protected = line
    for i, abbr in enumerate(_ABBREVIATIONS):
        protected = re.sub(re.escape(abbr), f"\x00{i}\x00", protected, flags=re.IGNORECASE)
    parts = _SENTENCE_END.split(protected)
    restore = re.compile("\x00(\\d+)\x00")
    return [restore.sub(lambda m: _ABBREVIATIONS[int(m.group(1))], p) for p in parts]


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text)


def markers(text: str) -> list[int]:
    return [int(m) for m in _MARKER.findall(text)]


@dataclass(frozen=True)
class Terms:
    """What a piece of text asserts, as comparable units."""

    content: frozenset[str]  # stemmed content words, lowercased
    critical: frozenset[str]  # numbers, paths, flags, identifiers, names (normalised)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(strip_markers(text).replace("`", " "))


_SNOWBALL = Stemmer.Stemmer("english")


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The English Snowball stemmer (PyStemmer): 'changed'/'change', 'settings'/'setting',
    'files'/'file', 'UIDs'/'UID' meet, which the earlier hand-written suffix stripper missed
    (it refused a right answer that said "changed" where the document said "change")."""
    return _SNOWBALL.stemWord(word.lower())


def normalise_critical(token: str) -> str:
    token = token.lower().rstrip(".:")
    if _NUMBER.match(token):
        token = token.replace(",", "")
    return token


def is_critical(token: str, sentence_initial: bool) -> bool:
    if any(ch.isdigit() for ch in token):
        return True
    if token.lower() in _ABBREVIATION_TOKENS:
        return False
    if token.startswith("-") or any(ch in token for ch in "/_.:#+"):
        return True  # flags, paths, file names, dotted or snake_case identifiers, C#/C++
    if token[0].isupper() and not sentence_initial and token.lower() not in STOPWORDS:
        return True  # a name mid-sentence
    return any(ch.isupper() for ch in token[1:])  # CamelCase / ACRONYM


_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def normalise_text(text: str) -> str:
    """Lowercase with runs of whitespace collapsed: the form code spans are matched in."""
    return " ".join(text.lower().split())


def code_spans(text: str) -> set[str]:
    """Inline code a statement quotes (`apt-mark hold`): it must appear verbatim in a context,
    since a command whose words all occur but in another order (`apt hold`) is a different one."""
    return {"`" + normalise_text(m) + "`" for m in _CODE_SPAN.findall(text) if " " in m.strip()}


def terms(text: str) -> Terms:
    content: set[str] = set()
    critical: set[str] = code_spans(text)
    for sentence in split_sentences(text) or [text]:
        for i, tok in enumerate(tokens(sentence)):
            low = tok.lower()
            if low in _ABBREVIATION_TOKENS:
                continue
            if is_critical(tok, sentence_initial=i == 0):
                critical.add(normalise_critical(tok))
                content.add(normalise_critical(tok))
                continue
            for word in low.split("-"):  # 'command-line' is the same claim as 'command line'
                if word not in STOPWORDS and (len(word) > 2 or word.isdigit()):
                    content.add(stem(word))
    return Terms(frozenset(content), frozenset(critical))


def context_vocabulary(text: str) -> frozenset[str]:
    """Everything a statement's terms may be matched against: stems, raw and normalised tokens."""
    vocab: set[str] = set()
    for tok in tokens(text):
        low = tok.lower()
        vocab.update({low, stem(low), normalise_critical(tok)})
        for piece in re.split(r"[./:_+#-]+", low):  # 'pypdf.PdfReader' also matches 'PdfReader'
            if piece:
                vocab.update({piece, stem(piece)})
    return frozenset(vocab)
