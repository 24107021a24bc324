"""The LLM judge: robust parsing of remote (JSON) verdicts, retries, and errors that are reported,
never turned into NaN. Fakes stand in for the generator in the fast tests because the point is
what the judge does with *malformed* replies, which the real local model (yes/no logits) never
produces; one slow test runs the real model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eval.dataset import Sample
from eval.runner import Evaluator
from rag.config import GroundingSettings, Settings
from rag.grounding.llm_judge import JudgeError, LLMSupportJudge, parse_verdict
from rag.protocols import Generation, GenerationParams, Message
from tests.eval.conftest import ZEPHYR


class ScriptedGenerator:
    """A remote-style generator (no yes_probability) replying from a script, recording calls."""

    name = "scripted"

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.calls: list[list[Message]] = []

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        self.calls.append(messages)
        return Generation(self.replies.pop(0) if self.replies else "")

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        yield self.generate(messages, params).text


class FixedYesNo(ScriptedGenerator):
    """A local-style generator: verdicts come from yes_probability, never from generated text."""

    def __init__(self, p: float) -> None:
        super().__init__([])
        self.p = p

    def yes_probability(self, messages: list[Message]) -> float:
        self.calls.append(messages)
        return self.p


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('{"verdict": "yes"}', True),
        ('{"verdict": "no"}', False),
        ('```json\n{"verdict": "Yes"}\n```', True),
        ("{'verdict': 'no'}", False),
        ('Sure! Here is my answer: {"verdict": "yes"} because the port matches.', True),
        ('{"supported": false}', False),
        ('"verdict": "no"', False),
        ("Yes.", True),
        ("no, the context says 7341", False),
        ('{"verdict": "maybe"}', None),
        ("I think it depends on the context.", None),
        ("", None),
        ('{"verdict": "yes"', True),  # truncated JSON whose verdict field is still clear
        ('{"verdict": "yes"} ... actually {"verdict": "no"}', True),  # the first complete object wins
        ('"verdict": "yes", later "verdict": "no"', None),  # contradictory fields: no verdict
    ],
)
def test_parse_verdict(reply: str, verdict: bool | None) -> None:
    assert parse_verdict(reply) is verdict


def test_json_judge_retries_then_succeeds() -> None:
    gen = ScriptedGenerator(["I am not sure.", '```json\n{"verdict": "no"}\n```'])
    judge = LLMSupportJudge(gen, GroundingSettings(llm_retries=2))
    support = judge.judge("The relay listens on port 8080.", ZEPHYR)
    assert support.supported is False and support.score == 0.0
    assert len(gen.calls) == 2
    assert gen.calls[1][-1]["content"].startswith("Your reply was not valid")


def test_json_judge_gives_up_with_a_reason() -> None:
    gen = ScriptedGenerator(["hmm", "well", "perhaps"])
    judge = LLMSupportJudge(gen, GroundingSettings(llm_retries=2))
    with pytest.raises(JudgeError, match=r"no verdict in 3 LLM replies: 'hmm \| well \| perhaps'"):
        judge.judge("The relay listens on port 8080.", ZEPHYR)


def test_yes_probability_judge_uses_logits_and_lexical_evidence(judge) -> None:
    gen = FixedYesNo(0.2)
    llm = LLMSupportJudge(gen, GroundingSettings(), evidence_judge=judge)
    support = llm.judge("The relay listens on TCP port 8080.", ZEPHYR)
    assert support.score == 0.2 and support.supported is False
    assert "7341" in support.evidence and "8080" in support.missing
    assert "Statement: The relay listens on TCP port 8080." in gen.calls[0][-1]["content"]


def test_unscorable_sample_is_reported_not_nan(settings: Settings, cached_embedder) -> None:
    gen = ScriptedGenerator(["???"] * 50)
    llm = LLMSupportJudge(gen, settings.grounding)
    ev = Evaluator(settings, cached_embedder, llm, "llm")
    record = ev.score(
        Sample(question="Which port?", answer="The relay listens on port 7341.", contexts=ZEPHYR)
    )
    assert record["metrics"]["faithfulness"] is None
    assert "no verdict" in record["error"] and "faithfulness" in record["errors"]
    assert record["metrics"]["answer_relevance"] is not None  # embedding-only metrics still score


@pytest.mark.slow
def test_real_local_model_as_judge(local_generator, judge) -> None:
    llm = LLMSupportJudge(local_generator, GroundingSettings(), evidence_judge=judge)
    print(f"\nLLM judge mode with the default generator: {llm.mode}")  # backend-dependent
    good, wrong, off = llm.judge_many(
        [
            "Zephyr keeps daily snapshots for 14 days.",
            "Zephyr keeps daily snapshots for 30 days.",
            "Zephyr uploads snapshots to Amazon S3.",
        ],
        ZEPHYR,
    )
    assert good.score > wrong.score and good.score > off.score
    assert good.supported and not off.supported
