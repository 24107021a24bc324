"""The grounding module with the real embedder: what counts as supported, refusals, citations."""

from __future__ import annotations

import pytest

from rag.config import GroundingSettings
from rag.grounding.answer import ground_answer, is_refusal
from rag.grounding.support import LexicalSupportJudge
from rag.grounding.text import split_sentences, terms

CONTEXTS = [
    "The zephyr-relay daemon sends snapshots to a remote site. It listens on TCP port 7341 and "
    "accepts connections only from hosts listed in /etc/zephyr/relay.allow.",
    "By default Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks.",
]


@pytest.fixture(scope="module")
def judge(embedder) -> LexicalSupportJudge:
    return LexicalSupportJudge(GroundingSettings(), embedder)


def test_a_copied_fact_is_supported_and_names_its_evidence(judge) -> None:
    s = judge.judge("The relay daemon listens on TCP port 7341.", CONTEXTS)
    # 0.75 is the ceiling of the calibrated weights: on HaluEval QA a quarter of fully covered
    # statements were still wrong, so full coverage alone never means certainty.
    assert s.supported and s.score > 0.7
    assert s.context_index == 0 and "7341" in s.evidence


def test_a_paraphrase_is_supported(judge) -> None:
    s = judge.judge("Daily snapshots are kept for 14 days by default.", CONTEXTS)
    assert s.supported


@pytest.mark.parametrize(
    ("statement", "missing"),
    [
        ("The relay daemon listens on TCP port 8080.", "8080"),  # one wrong number
        ("Allowed hosts are listed in /etc/zephyr/hosts.allow.", "/etc/zephyr/hosts.allow"),  # wrong path
        ("Zephyr keeps daily snapshots for 30 days.", "30"),
    ],
)
def test_one_wrong_detail_is_unsupported_and_named(judge, statement: str, missing: str) -> None:
    s = judge.judge(statement, CONTEXTS)
    assert not s.supported
    assert missing in s.missing


def test_a_quoted_command_must_appear_verbatim(judge) -> None:
    """The 1.5B answered `apt hold` where the context said `apt-mark hold`: same words, wrong command."""
    contexts = ["To put a package on hold, run apt-mark hold package_name; undo it with apt-mark unhold."]
    assert judge.judge("Run `apt-mark hold package_name` to hold a package.", contexts).supported
    wrong = judge.judge("The command to put a package on hold with apt is `apt hold`.", contexts)
    assert not wrong.supported and "`apt hold`" in wrong.missing


def test_an_off_topic_statement_is_unsupported(judge) -> None:
    assert not judge.judge("Canberra is the capital of Australia.", CONTEXTS).supported


def test_answer_gets_citations_from_evidence_and_bad_markers_are_dropped(judge) -> None:
    draft = "The relay listens on TCP port 7341 [7]. Weekly snapshots are kept for 8 weeks."
    g = ground_answer(draft, CONTEXTS, judge, GroundingSettings())
    assert not g.refused
    assert g.answer == "The relay listens on TCP port 7341 [1]. Weekly snapshots are kept for 8 weeks [2]."
    assert g.cited == [1, 2]


def test_invented_answer_is_refused_with_the_fixed_message(judge) -> None:
    settings = GroundingSettings()
    g = ground_answer(
        "Zephyr encrypts snapshots with AES-256-GCM using keys from Vault.", CONTEXTS, judge, settings
    )
    assert g.refused and g.answer == settings.refusal_message
    assert "supported" in g.reason


@pytest.mark.parametrize(
    "text",
    [
        "The documents do not contain the answer.",
        "The context does not mention which cipher is used.",
        "This is not specified in the provided documents.",
        "There is no information about encryption in the passages.",
        "I don't know.",
    ],
)
def test_model_refusals_are_recognised(judge, text: str) -> None:
    assert is_refusal(text)
    assert ground_answer(text, CONTEXTS, judge, GroundingSettings()).refused


@pytest.mark.parametrize(
    "text",
    ["The command does not return a value.", "If the file is not found, zephyr exits with status 2."],
)
def test_ordinary_negations_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)


def test_sentences_and_terms() -> None:
    assert split_sentences("Run zephyr prune, e.g. nightly. It uses port 7341.\n- item two") == [
        "Run zephyr prune, e.g. nightly.",
        "It uses port 7341.",
        "item two",
    ]
    t = terms("Edit /etc/zephyr/zephyr.conf and set keep-daily to 14 with the --force flag for Zephyr.")
    assert {"/etc/zephyr/zephyr.conf", "14", "--force", "zephyr"} <= t.critical
