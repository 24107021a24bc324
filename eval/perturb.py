"""HELM-style robustness perturbations of a question: the same question asked a little differently,
so an evaluation can show whether retrieval and answers hold up when users type the way they do.

Every perturbation keeps the question's meaning; the word tables live in ``data/perturbations.yaml``.

- ``typos``: one keyboard slip in about 15 % of the eligible words (``typos.word_rate``; at least
  one word when any is eligible): a QWERTY-neighbour substitution, a swap of two adjacent letters or
  a dropped letter, never in a word's first letter. Eligible: lowercase words of 4 letters or more
  (and capitalised question words such as "Which").
- ``lowercase``: every word lowercased, names included ("Zephyr" -> "zephyr"), code excepted.
- ``contractions``: one perturbation both ways. It contracts every expanded form it finds ("do
  not" -> "don't", "what is" -> "what's", "cannot" -> "can't"); a question with none is expanded
  instead ("don't" -> "do not"), so applying it twice gives the question back. It uses no randomness.
- ``synonyms``: about half of the words found in a small table of meaning-preserving swaps
  ("show" -> "display", "folder" -> "directory", "start" -> "launch"), at least one.
- ``filler``: one, sometimes two, filler phrases ("So,", "I was wondering,", "um,") at the start or
  after a clause (a comma).
- ``paraphrase``: the question form rewritten: "What is X?" -> "Can you tell me what X is?",
  "How do I X?" -> "What is the way to X?", "Which X?" -> "Tell me which X."; any other question
  gets a generic frame ("I'd like to know: how ..."). X is kept verbatim.

What no perturbation ever touches (it is kept character for character and in order): code, that
is a backticked or quoted span and any token with a digit, a symbol (``/ . _ - = $`` ...) or a capital
after its first letter (CamelCase, ALL-CAPS: UID, 65534, /etc/zephyr, --dry-run, `zephyr prune`).
Typos and synonyms also leave alone what looks like a name: capitalised words inside a sentence,
lowercase tool names (``technical_names``: systemd, nginx), words without a vowel (sshd), and the
words next to a cue such as "command" or "daemon" ("the command zephyr prune").

Each output is a function of (seed, name, question) only: the random generator is seeded from a
SHA-256 of the three, never from ``hash()`` or the global random state, so runs and processes agree.
A perturbation that cannot change a question returns it unchanged; the caller skips duplicates.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rag.errors import RagError
from rag.grounding.text import STOPWORDS

DATA_FILE = Path(__file__).resolve().parent / "data" / "perturbations.yaml"

# A token is a run of non-space characters; a backticked or quoted span inside it (spaces and all)
# belongs to it. A single quote opens a span only where it cannot be an apostrophe ("don't").
_SPAN = r"`[^`]*`|\"[^\"]*\"|“[^”]*”|(?<![\w'\u2019])'[^'\n]*'(?!\w)"
_TOKEN = re.compile(rf"(?:{_SPAN}|\S)+")
_LEAD = "([{"
_TRAIL = ")]}?!,;:."
_SENTENCE_END = ".?!"
_CLAUSE_BREAKS = "?!,;\n"


class PerturbationError(RagError):
    """An unknown perturbation was asked for; the message lists the known ones."""


@functools.cache
def _tables() -> dict[str, Any]:
    return yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))


def _words(folded: str) -> frozenset[str]:
    return frozenset(folded.split())


# ---------------------------------------------------------------- tokens
@dataclass
class _Text:
    """A question as tokens and the whitespace around them, so a rewrite keeps the rest as it was."""

    gaps: list[str]  # len(tokens) + 1: before the first token, between tokens, after the last
    tokens: list[str]

    @classmethod
    def parse(cls, question: str) -> _Text:
        gaps, tokens, end = [], [], 0
        for m in _TOKEN.finditer(question):
            gaps.append(question[end : m.start()])
            tokens.append(m.group())
            end = m.end()
        gaps.append(question[end:])
        return cls(gaps, tokens)

    def join(self) -> str:
        return "".join(g + t for g, t in zip(self.gaps, [*self.tokens, ""], strict=True))

    def core(self, i: int) -> str:
        return _parts(self.tokens[i])[1]

    def set_core(self, i: int, core: str) -> None:
        lead, _, trail = _parts(self.tokens[i])
        self.tokens[i] = lead + core + trail

    def merge(self, i: int, n: int, core: str) -> None:
        """Replace tokens i..i+n-1 by one: the first one's lead, `core`, the last one's trail."""
        lead, trail = _parts(self.tokens[i])[0], _parts(self.tokens[i + n - 1])[2]
        self.tokens[i : i + n] = [lead + core + trail]
        del self.gaps[i + 1 : i + n]

    def sentence_initial(self, i: int) -> bool:
        return i == 0 or self.tokens[i - 1][-1:] in _SENTENCE_END


def _parts(token: str) -> tuple[str, str, str]:
    """(leading brackets, the word, trailing punctuation): "(snapshots?)" -> "(", "snapshots", "?)"."""
    core = token.lstrip(_LEAD)
    lead = token[: len(token) - len(core)]
    stripped = core.rstrip(_TRAIL)
    return lead, stripped, core[len(stripped) :]


def _is_word(core: str) -> bool:
    """Letters only, apostrophes inside allowed ("don't"); a digit of any script makes it code."""
    return all(piece.isalpha() for piece in _fold(core).split("'"))


def _is_code(token: str) -> bool:
    """Never changed by any perturbation: spans, digits, symbols, CamelCase and ALL-CAPS."""
    core = _parts(token)[1]
    return not _is_word(core) or any(ch.isupper() for ch in core[1:])


def _plain(text: _Text, i: int) -> bool:
    """A word that typos and synonyms may change: not code and not something that looks like a name."""
    token = text.tokens[i]
    if _is_code(token):
        return False
    core = _parts(token)[1]
    low = core.lower()
    if low in _words(_tables()["technical_names"]) or not set(low) & set(_tables()["vowels"]):
        return False
    return not (core[0].isupper() and not text.sentence_initial(i))


def _near_cues(text: _Text) -> set[int]:
    """Tokens next to a cue word ("the command zephyr prune", "the backup daemon") or a tool's name
    ("systemctl restart"): likely names and arguments."""
    tables = _tables()
    cues, reach = _words(tables["code_cues"]) | _words(tables["technical_names"]), tables["cue_reach"]
    near: set[int] = set()
    for i, token in enumerate(text.tokens):
        if _parts(token)[1].lower() not in cues:
            continue
        if not _parts(token)[2]:
            near |= _cue_run(text, range(i + 1, min(i + 1 + reach, len(text.tokens))), forward=True)
        near |= _cue_run(text, range(i - 1, max(i - 1 - reach, -1), -1), forward=False)
    return near


def _cue_run(text: _Text, indices: Iterable[int], forward: bool) -> set[int]:
    """The words from a cue outwards, up to a stopword or the end of a clause."""
    run: set[int] = set()
    for j in indices:
        lead, core, trail = _parts(text.tokens[j])
        if not _is_word(core) or core.lower() in STOPWORDS or (lead and forward) or (trail and not forward):
            break
        run.add(j)
        if trail and forward:
            break
    return run


def _eligible(text: _Text) -> list[int]:
    near = _near_cues(text)
    return [i for i in range(len(text.tokens)) if i not in near and _plain(text, i)]


def _cased(word: str, like: str) -> str:
    """`word` with the capital first letter of `like` when it has one."""
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _has_word(text: _Text) -> bool:
    return any(_is_word(_parts(t)[1]) for t in text.tokens)


def _lower_question_word(token: str) -> str:
    """Lowercase a leading question word ("How", "What's") once a phrase goes before it; a name,
    "I" or code keeps its capital."""
    fold = _fold(_parts(token)[1])
    first = _contraction_maps()[1].get(fold, fold).split()[:1]
    if _is_code(token) or not first or first[0] not in STOPWORDS or first[0] == "i":
        return token
    return token.lower()


def _pick(items: Sequence[int], rate: float, rng: random.Random) -> list[int]:
    """Each item with probability `rate`, and one at random when that picked none."""
    picked = [i for i in items if rng.random() < rate]
    return picked or ([rng.choice(items)] if items else [])


# ---------------------------------------------------------------- typos
def _typos(question: str, rng: random.Random, rate: float | None = None) -> str:
    table = _tables()["typos"]
    text = _Text.parse(question)
    eligible = [
        i
        for i in _eligible(text)
        if len(core := text.core(i)) >= table["min_letters"]
        and core.isalpha()
        and (core.islower() or core.lower() in STOPWORDS)
    ]
    for i in _pick(eligible, table["word_rate"] if rate is None else rate, rng):
        text.set_core(i, _typo(text.core(i), rng))
    return text.join()


def _typo(word: str, rng: random.Random) -> str:
    edits = [_substitute, _swap, _drop]
    rng.shuffle(edits)
    for edit in edits:
        out = edit(word, rng)
        if out != word:
            return out
    return word


def _substitute(word: str, rng: random.Random) -> str:
    neighbours = _tables()["typos"]["keyboard_neighbours"]
    places = [i for i in range(1, len(word)) if word[i].lower() in neighbours]
    if not places:
        return word
    i = rng.choice(places)
    new = rng.choice(neighbours[word[i].lower()])
    return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1 :]


def _swap(word: str, rng: random.Random) -> str:
    places = [i for i in range(1, len(word) - 1) if word[i] != word[i + 1]]
    if not places:
        return word
    i = rng.choice(places)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _drop(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word))
    return word[:i] + word[i + 1 :]


def typos(question: str, seed: int, rate: float | None = None) -> str:
    """``perturb(question, "typos", seed)`` with another share of words edited than the table's."""
    return _typos(question, _rng(question, "typos", seed), rate)


# ---------------------------------------------------------------- lowercase
def _lowercase(question: str, rng: random.Random) -> str:
    text = _Text.parse(question)
    text.tokens = [t if _is_code(t) else t.lower() for t in text.tokens]
    return text.join()


# ---------------------------------------------------------------- contractions
@functools.cache
def _contraction_maps() -> tuple[dict[tuple[str, ...], str], dict[str, str]]:
    """(expanded words -> contraction, contraction -> expanded), from the table."""
    table = _tables()["contractions"]
    expand = {short: long for long, short in table["pairs"]}
    contract = {tuple(long.split()): short for long, short in table["pairs"] + table["contract_only"]}
    return contract, expand


def _contractions(question: str, rng: random.Random) -> str:
    contracted = _contract(question)
    return contracted if contracted != question else _expand(question)


def _fold(core: str) -> str:
    return core.replace("\u2019", "'").lower()


def _contract(question: str) -> str:
    contract, _ = _contraction_maps()
    text = _Text.parse(question)
    i = 0
    while i < len(text.tokens):
        for n in (2, 1):
            key = _contractible(text, i, n)
            if key in contract:
                text.merge(i, n, _cased(contract[key], text.core(i)))
                break
        i += 1
    return text.join()


def _contractible(text: _Text, i: int, n: int) -> tuple[str, ...] | None:
    """The words at i..i+n-1 when they may become one contraction: plain words, no punctuation
    between them, and a word after them unless the contraction may end a clause ("don't.")."""
    if i + n > len(text.tokens) or any(_is_code(t) for t in text.tokens[i : i + n]):
        return None
    parts = [_parts(t) for t in text.tokens[i : i + n]]
    if any(p[2] for p in parts[:-1]) or any(p[0] for p in parts[1:]):
        return None
    key = tuple(_fold(p[1]) for p in parts)
    short = _contraction_maps()[0].get(key, "")
    clause_end = bool(parts[-1][2]) or i + n == len(text.tokens)
    if clause_end and not short.endswith(tuple(_tables()["contractions"]["clause_final_ok"])):
        return None
    return key


def _expand(question: str) -> str:
    _, expand = _contraction_maps()
    inverted = _words(_tables()["contractions"]["inverted_after"])
    text = _Text.parse(question)
    for i, token in enumerate(text.tokens):
        core = text.core(i)
        if _is_code(token) or _fold(core) not in expand:
            continue
        if i and not _parts(text.tokens[i - 1])[2] and _fold(text.core(i - 1)) in inverted:
            continue  # "Why doesn't it" is not "Why does not it"
        text.set_core(i, _cased(expand[_fold(core)], core))
    return text.join()


# ---------------------------------------------------------------- synonyms
def _synonyms(question: str, rng: random.Random) -> str:
    table = _tables()["synonyms"]
    text = _Text.parse(question)
    eligible = [i for i in _eligible(text) if text.core(i).lower() in table["table"]]
    for i in _pick(eligible, table["word_rate"], rng):
        core = text.core(i)
        text.set_core(i, _cased(rng.choice(table["table"][core.lower()]), core))
    return text.join()


# ---------------------------------------------------------------- filler
def _filler(question: str, rng: random.Random) -> str:
    table = _tables()["filler"]
    text = _Text.parse(question)
    if not _has_word(text):
        return question
    last = len(text.tokens) - 1
    places = [-1] + [i for i, t in enumerate(text.tokens) if t.endswith(",") and i < last]
    n = 2 if len(places) > 1 and rng.random() < table["second_rate"] else 1
    for place in rng.sample(places, n):
        if place < 0:
            first = _lower_question_word(text.tokens[0])
            text.tokens[0] = f"{rng.choice(table['start'])} {first}"
        else:
            text.tokens[place] += f" {rng.choice(table['between'])}"
    return text.join()


# ---------------------------------------------------------------- paraphrase
@dataclass(frozen=True)
class _Form:
    pattern: re.Pattern[str]
    templates: tuple[str, ...]
    unless_ends_with: frozenset[str]


@functools.cache
def _forms() -> tuple[_Form, ...]:
    return tuple(
        _Form(
            re.compile(f["pattern"], re.IGNORECASE | re.DOTALL),
            tuple(f["templates"]),
            _words(f.get("unless_ends_with", "")),
        )
        for f in _tables()["paraphrase"]["forms"]
    )


def _paraphrase(question: str, rng: random.Random) -> str:
    table = _tables()["paraphrase"]
    stripped = question.strip()
    text = _Text.parse(stripped)
    if not _has_word(text):
        return question
    for form in _forms():
        m = form.pattern.fullmatch(stripped)
        if m and _fits(m["x"], form):
            verb = (m.groupdict().get("v") or table["default_verb"]).lower()
            return rng.choice(form.templates).format(x=m["x"], v=verb)
    text.tokens[0] = _lower_question_word(text.tokens[0])
    return rng.choice(table["generic"]).format(q=text.join())


def _fits(x: str, form: _Form) -> bool:
    """One clause (a rewrite moves words to its end: "what X, is it Y is"), not ending in a word the
    rewrite would strand ("what X used for is")."""
    last = _parts(x.split()[-1])[1].lower() if x.split() else ""
    return not set(x) & set(_CLAUSE_BREAKS) and last not in form.unless_ends_with


# ---------------------------------------------------------------- the registry
_PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "typos": _typos,
    "lowercase": _lowercase,
    "contractions": _contractions,
    "synonyms": _synonyms,
    "filler": _filler,
    "paraphrase": _paraphrase,
}
PERTURBATIONS: tuple[str, ...] = tuple(_PERTURBATIONS)


def _rng(question: str, name: str, seed: int) -> random.Random:
    """A generator of its own per (seed, name, question), the same in every process and run."""
    blob = f"{seed}\x1f{name}\x1f{question}".encode("utf-8", "surrogatepass")
    return random.Random(int.from_bytes(hashlib.sha256(blob).digest()[:8], "big"))


def _check(names: Iterable[str]) -> None:
    unknown = [n for n in names if n not in _PERTURBATIONS]
    if unknown:
        raise PerturbationError(
            f"unknown perturbation {', '.join(map(repr, unknown))}; known: {', '.join(PERTURBATIONS)}"
        )


def perturb(question: str, name: str, seed: int) -> str:
    """The question perturbed by `name`; unchanged when that perturbation finds nothing to change."""
    _check([name])
    return _PERTURBATIONS[name](question, _rng(question, name, seed))


def perturbations(question: str, names: Sequence[str], seed: int) -> dict[str, str]:
    """Each named perturbation of the question, by name; every name is checked before any runs."""
    _check(names)
    return {name: perturb(question, name, seed) for name in names}
