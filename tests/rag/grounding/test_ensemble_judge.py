"""The ensemble judge: lexical evidence + the generator's P(yes) on the evidence sentences.

The fast tests use a declared fake yes/no scorer: what is checked is the combination arithmetic,
which sentences the LLM is shown, and the error for a generator that cannot give P(yes) -- none
of which depends on the model. The slow test runs the real default generator."""

from __future__ import annotations

import math

import pytest

from rag.config import EnsembleWeights, GroundingSettings
from rag.errors import ConfigError
from rag.grounding.ensemble import EnsembleSupportJudge, combined_probability
from rag.grounding.judges import make_support_judge
from rag.grounding.support import LexicalSupportJudge
from rag.protocols import Generation, GenerationParams, Message
from tests.eval.conftest import ZEPHYR


class FixedYesNo:
    """Fake: P(yes) is fixed, and every prompt is recorded so the test can read what was shown."""

    name = "fixed-yes-no"

    def __init__(self, p: float) -> None:
        self.p = p
        self.prompts: list[list[Message]] = []

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        raise AssertionError("the ensemble judge never generates text")

    def stream(self, messages: list[Message], params: GenerationParams):
        raise AssertionError("the ensemble judge never generates text")

    def yes_probability(self, messages: list[Message]) -> float:
        self.prompts.append(messages)
        return self.p


class TextOnly:
    """Fake remote generator: text only, no logits."""

    name = "remote"

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        return Generation('{"verdict": "yes"}')

    def stream(self, messages: list[Message], params: GenerationParams):
        yield "yes"


def test_combination_is_the_logistic_stack() -> None:
    g = GroundingSettings(ensemble=EnsembleWeights(bias=-1.0, lexical=2.0, llm=0.5))
    z = -1.0 + 2.0 * 0.3 + 0.5 * math.log(0.8 / 0.2)
    assert combined_probability(g, 0.3, 0.8) == pytest.approx(1 / (1 + math.exp(-z)))
    # P(yes) of exactly 0 or 1 is clipped, so the logit stays finite
    assert 0.0 < combined_probability(g, 0.0, 0.0) < combined_probability(g, 0.0, 1.0) < 1.0


def test_llm_reads_the_best_evidence_sentences_in_order(embedder) -> None:
    fake = FixedYesNo(0.9)
    g = GroundingSettings(ensemble=EnsembleWeights(evidence_sentences=2))
    judge = EnsembleSupportJudge(fake, g, embedder)
    (verdict,) = judge.judge_many(["Zephyr keeps daily snapshots for 14 days."], ZEPHYR)
    prompt = fake.prompts[0][1]["content"]
    assert "daily snapshots for 14 days" in prompt  # the matching sentence is shown ...
    assert "TCP port 7341" not in prompt  # ... and unrelated passages are not
    lexical = LexicalSupportJudge(g, embedder)
    (plain,) = lexical.judge_many(["Zephyr keeps daily snapshots for 14 days."], ZEPHYR)
    expected = combined_probability(g, lexical.logit(lexical.features([verdict.text], ZEPHYR)[0]), 0.9)
    assert verdict.score == pytest.approx(expected)
    assert verdict.evidence == plain.evidence and "P(yes) = 0.90" in verdict.reason


def test_statement_without_content_needs_no_llm_call(embedder) -> None:
    fake = FixedYesNo(0.1)
    (verdict,) = EnsembleSupportJudge(fake, GroundingSettings(), embedder).judge_many(["It is."], ZEPHYR)
    assert verdict.supported and not fake.prompts


def test_text_only_generator_is_refused_with_the_fix(embedder) -> None:
    with pytest.raises(ConfigError, match=r"grounding\.judge 'llm' or 'support'"):
        make_support_judge("ensemble", GroundingSettings(), embedder, TextOnly())
    with pytest.raises(ConfigError, match="needs a generator"):
        make_support_judge("ensemble", GroundingSettings(), embedder, None)


@pytest.mark.slow
def test_real_generator_ranks_a_wrong_detail_and_a_changed_relation_lower(generator, embedder) -> None:
    judge = make_support_judge("ensemble", GroundingSettings(), embedder, generator)
    good, wrong, relation = judge.judge_many(
        [
            "Zephyr keeps daily snapshots for 14 days.",
            "Zephyr keeps daily snapshots for 30 days.",
            "The zephyr-relay daemon accepts connections from every host except those in "
            "/etc/zephyr/relay.allow.",
        ],
        ZEPHYR,
    )
    assert good.score > wrong.score and good.score > relation.score
    assert good.supported and not wrong.supported
