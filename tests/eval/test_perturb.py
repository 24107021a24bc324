"""Robustness perturbations: deterministic everywhere, and meaning-preserving on technical questions
(code, paths, numbers and flags survive each one unchanged and in order)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.perturb import DATA_FILE, PERTURBATIONS, PerturbationError, perturb, perturbations, typos
from rag.errors import RagError
from rag.grounding.text import STOPWORDS

ROOT = Path(__file__).resolve().parents[2]
TABLES = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
SEEDS = range(5)
RANDOM = ("typos", "synonyms", "filler", "paraphrase")

# (question, the tokens that must come out unchanged and in this order)
QUESTIONS: list[tuple[str, list[str]]] = [
    (
        "How do I restart the `zephyr-relay` daemon after editing /etc/zephyr/relay.allow?",
        ["`zephyr-relay`", "/etc/zephyr/relay.allow"],
    ),
    ("What is the default port of zephyr-relay, is it 7341?", ["zephyr-relay", "7341"]),
    (
        "Which flag makes `zephyr prune` skip deleting, --dry-run or -n?",
        ["`zephyr prune`", "--dry-run", "-n"],
    ),
    ("Why does the service run as UID 65534 and not as root?", ["UID", "65534", "root"]),
    ('Can I show the folder where snapshots are stored with "zephyr list --all"?', ['"zephyr list --all"']),
    (
        "How do I set keep_daily=30 in /etc/zephyr/zephyr.conf so that old snapshots are kept longer?",
        ["keep_daily=30", "/etc/zephyr/zephyr.conf"],
    ),
    (
        "What is the difference between systemctl reload and systemctl restart for zephyr.service?",
        ["systemctl reload", "systemctl restart", "zephyr.service"],
    ),
    (
        "Does Zephyr keep weekly snapshots for 8 weeks when I use the --keep-weekly option?",
        ["8", "--keep-weekly"],
    ),
    ("What's the log file name, is it zephyr.log or catalog.db?", ["zephyr.log", "catalog.db"]),
    (
        "How do I start the backup with 'zephyr backup ~/projects' every night at 03:30?",
        ["'zephyr backup ~/projects'", "03:30"],
    ),
    (
        "I cannot find the setting MaxSnapshots; where is it documented in the HTTP API?",
        ["MaxSnapshots", "HTTP API"],
    ),
]
TEXTS = [q for q, _ in QUESTIONS]


def _in_order(needles: list[str], text: str) -> bool:
    at = 0
    for needle in needles:
        at = text.find(needle, at)
        if at < 0:
            return False
        at += len(needle)
    return True


def _words(text: str) -> list[str]:
    """Lowercased words with their punctuation stripped, for comparing what a rewrite kept."""
    return [w for w in (re.sub(r"^\W+|\W+$", "", t).lower() for t in text.split()) if w]


def _content(text: str) -> set[str]:
    """Content words, contractions expanded first ("what's" is "what is")."""
    expand = {short: long for long, short in TABLES["contractions"]["pairs"]}
    words = [part for w in _words(text) for part in expand.get(w, w).split()]
    return {w for w in words if w not in STOPWORDS}


# ---------------------------------------------------------------- the API
def test_names_and_unknown_name() -> None:
    assert PERTURBATIONS == ("typos", "lowercase", "contractions", "synonyms", "filler", "paraphrase")
    with pytest.raises(
        PerturbationError, match="unknown perturbation 'tpyos'; known: typos, lowercase"
    ) as exc:
        perturb("What is it?", "tpyos", 0)
    assert isinstance(exc.value, RagError)
    with pytest.raises(PerturbationError, match="'nope'"):
        perturbations("What is it?", ["typos", "nope"], 0)


def test_perturbations_by_name() -> None:
    q = TEXTS[0]
    out = perturbations(q, ["paraphrase", "lowercase"], 3)
    assert list(out) == ["paraphrase", "lowercase"]
    assert out == {n: perturb(q, n, 3) for n in out}


def test_nothing_to_change_gives_the_question_back() -> None:
    assert perturb("Where are snapshots stored?", "contractions", 0) == "Where are snapshots stored?"
    assert perturb("Where is zephyr.conf?", "synonyms", 0) == "Where is zephyr.conf?"
    assert perturb("Is `x` on?", "typos", 0) == "Is `x` on?"
    assert perturb("where is /etc?", "lowercase", 0) == "where is /etc?"
    for name in PERTURBATIONS:
        assert perturb("  ", name, 0) == "  "
        assert perturb("65534 /etc/zephyr", name, 0) == "65534 /etc/zephyr"


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", PERTURBATIONS)
def test_deterministic(name: str) -> None:
    for q in TEXTS:
        assert perturb(q, name, 7) == perturb(q, name, 7)


def test_deterministic_across_processes() -> None:
    script = (
        "import json, sys; from eval.perturb import PERTURBATIONS, perturbations; "
        "print(json.dumps([perturbations(q, PERTURBATIONS, 7) for q in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    run = subprocess.run(
        [sys.executable, "-c", script, json.dumps(TEXTS)], cwd=ROOT, env=env, capture_output=True, check=True
    )
    assert json.loads(run.stdout) == [perturbations(q, PERTURBATIONS, 7) for q in TEXTS]


@pytest.mark.parametrize("name", RANDOM)
def test_seeds_differ(name: str) -> None:
    q = "How do I show the folder where every deleted snapshot is kept, and which files does it use?"
    assert len({perturb(q, name, seed) for seed in range(10)}) > 1


def test_lowercase_and_contractions_ignore_the_seed() -> None:
    for name in ("lowercase", "contractions"):
        assert len({perturb(TEXTS[8], name, seed) for seed in range(5)}) == 1


# ---------------------------------------------------------------- meaning
@pytest.mark.parametrize("name", PERTURBATIONS)
@pytest.mark.parametrize(("question", "protected"), QUESTIONS)
def test_protected_tokens_survive(name: str, question: str, protected: list[str]) -> None:
    for seed in SEEDS:
        out = perturb(question, name, seed)
        assert _in_order(protected, out), (name, seed, out)


@pytest.mark.parametrize("question", TEXTS)
def test_typos_are_single_edits_of_ordinary_words(question: str) -> None:
    for seed in SEEDS:
        out = perturb(question, "typos", seed)
        pairs = [(a, b) for a, b in zip(question.split(), out.split(), strict=True) if a != b]
        assert pairs, out
        for before, after in pairs:
            core = re.sub(r"\W+$", "", before)
            assert core.isalpha() and len(core) >= TABLES["typos"]["min_letters"]
            assert _one_edit(core, re.sub(r"\W+$", "", after)), (before, after)


def _one_edit(a: str, b: str) -> bool:
    """b is a with one letter changed, dropped, or swapped with its neighbour (never the first)."""
    if a[0] != b[0]:
        return False
    if len(b) == len(a) - 1:
        return any(a[:i] + a[i + 1 :] == b for i in range(1, len(a)))
    diff = [i for i in range(len(a)) if a[i] != b[i]] if len(a) == len(b) else []
    swapped = (
        len(diff) == 2 and diff[1] == diff[0] + 1 and (a[diff[0]], a[diff[1]]) == (b[diff[1]], b[diff[0]])
    )
    return len(diff) == 1 or swapped


def test_typo_rate_is_a_knob() -> None:
    q = TEXTS[5]
    changed = sum(a != b for a, b in zip(q.split(), typos(q, 0, rate=1.0).split(), strict=True))
    assert changed > sum(a != b for a, b in zip(q.split(), typos(q, 0).split(), strict=True)) >= 1
    assert typos(q, 0) == perturb(q, "typos", 0)


@pytest.mark.parametrize("question", TEXTS)
def test_lowercase_keeps_code(question: str) -> None:
    out = perturb(question, "lowercase", 0)
    assert out.lower() == question.lower()
    assert "UID" not in question or "UID" in out
    assert "MaxSnapshots" not in question or "MaxSnapshots" in out
    assert out.split()[0].islower()


def test_contractions_round_trip() -> None:
    q = "What is the port? It is not 22, I cannot connect and they are not sure why it is."
    contracted = perturb(q, "contractions", 0)
    assert contracted == "What's the port? It's not 22, I can't connect and they're not sure why it is."
    assert perturb(contracted, "contractions", 0) == q
    assert perturb("Don't I need root?", "contractions", 0) == "Do not I need root?"
    assert perturb("Why doesn't `zephyr prune` run?", "contractions", 0) == "Why doesn't `zephyr prune` run?"


def test_contractions_keep_code() -> None:
    q = 'Why does "do not" appear when I do not pass --it-is?'
    assert perturb(q, "contractions", 0) == 'Why does "do not" appear when I don\'t pass --it-is?'


@pytest.mark.parametrize("question", TEXTS)
def test_synonyms_come_from_the_table(question: str) -> None:
    table = TABLES["synonyms"]["table"]
    for seed in SEEDS:
        out = perturb(question, "synonyms", seed)
        before, after = _words(question), _words(out)
        assert len(before) == len(after)
        for a, b in zip(before, after, strict=True):
            assert a == b or b in table[a], (a, b)


def test_synonyms_swap_at_least_one() -> None:
    out = perturb("Can I show the folder where deleted files are kept?", "synonyms", 0)
    assert out != "Can I show the folder where deleted files are kept?"


@pytest.mark.parametrize("question", TEXTS)
def test_filler_only_adds_filler(question: str) -> None:
    filler = {w for phrase in TABLES["filler"]["start"] + TABLES["filler"]["between"] for w in _words(phrase)}
    for seed in SEEDS:
        out = perturb(question, "filler", seed)
        remaining = iter(_words(out))
        assert all(w in remaining for w in _words(question)), out  # a subsequence
        assert set(_words(out)) - set(_words(question)) <= filler
        assert len(out) > len(question)


@pytest.mark.parametrize("question", TEXTS)
def test_paraphrase_keeps_every_content_word(question: str) -> None:
    for seed in SEEDS:
        out = perturb(question, "paraphrase", seed)
        assert out != question and _content(question) <= _content(out), out


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "What is the default port?",
            {
                "Can you tell me what the default port is?",
                "Could you explain what the default port is?",
                "I'd like to know what the default port is.",
            },
        ),
        (
            "How do I prune old snapshots?",
            {
                "What is the way to prune old snapshots?",
                "What are the steps to prune old snapshots?",
                "Tell me how to prune old snapshots.",
            },
        ),
        (
            "Which port does the relay use?",
            {"Tell me which port does the relay use.", "Can you tell me which port does the relay use?"},
        ),
        (
            "What are the retention settings?",
            {
                "Can you tell me what the retention settings are?",
                "Could you explain what the retention settings are?",
                "I'd like to know what the retention settings are.",
            },
        ),
        (
            "What is UID 65534 used for?",
            {
                "I'd like to know: what is UID 65534 used for?",
                "Could you answer this: what is UID 65534 used for?",
                "Here is my question: what is UID 65534 used for?",
            },
        ),
        (
            "What is the log, zephyr.log?",
            {
                "I'd like to know: what is the log, zephyr.log?",
                "Could you answer this: what is the log, zephyr.log?",
                "Here is my question: what is the log, zephyr.log?",
            },
        ),
    ],
)
def test_paraphrase_forms(question: str, expected: set[str]) -> None:
    outs = {perturb(question, "paraphrase", seed) for seed in range(20)}
    assert outs == expected


def test_names_and_commands_are_not_typed_wrong() -> None:
    q = "Should Zephyr run the command zephyr prune through systemd every night, or sshd?"
    for seed in range(20):
        out = typos(q, seed, rate=1.0)
        assert _in_order(["Zephyr", "zephyr prune", "systemd", "sshd"], out), out


# ---------------------------------------------------------------- properties
_CODE_CHARS = set('/._=-`"')


def _protected(text: str) -> list[str]:
    """The tokens no perturbation may change, found independently of the module: a digit, a code
    character or a capital after the first letter (edge brackets and end punctuation stripped)."""
    out = []
    for token in text.split():
        core = token.lstrip("([{").rstrip("?.!")
        if core and (
            any(ch.isdigit() or ch in _CODE_CHARS for ch in core) or any(ch.isupper() for ch in core[1:])
        ):
            out.append(core)
    return out


_PIECES = st.sampled_from(
    [
        "What", "is", "how", "do", "I", "show", "the", "folder", "do not", "cannot", "it's", "which",
        "snapshots", "every", "Zephyr", "UID", "65534", "/etc/zephyr.conf", "--dry-run", "`zephyr prune`",
        '"a b"', "keep_daily=3", "CamelCase", ",", "?", "'x y'", "systemd", "(see", "it)", "don't",
    ]
)  # fmt: skip
_QUESTIONS = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(_PIECES, st.text(min_size=1, max_size=8)), max_size=14).map(" ".join),
)


@pytest.mark.parametrize("name", PERTURBATIONS)
@settings(max_examples=150, deadline=None)
@given(question=_QUESTIONS, seed=st.integers(0, 2**32))
def test_property_never_raises_and_keeps_code(name: str, question: str, seed: int) -> None:
    out = perturb(question, name, seed)
    assert isinstance(out, str)
    assert _in_order(_protected(question), out), (question, out)
    assert perturb(question, name, seed) == out
