"""The ensemble support judge: the lexical judge's evidence and the generator's yes/no probability,
combined into one calibrated P(supported) per statement.

Why both: they fail on different statements. The lexical judge catches a changed number, path or
name (a term the context does not contain) but not a relation changed between reused words ("A
calls B" for "B calls A"); a small LLM reads the relation but waves through some wrong numbers.
Why the evidence sentences and not the passages: the LLM reads only the few context sentences the
lexical judge matched to the statement, so a verdict is one short forward pass.

The combination is logistic stacking, ``sigmoid(bias + lexical * z_lexical + llm * logit(P(yes)))``,
with the three weights (``grounding.ensemble``) fitted on labelled calibration data by
bench/validate_judges.py --ensemble; the fit is what makes the probability calibrated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from rag.config import GroundingSettings
from rag.errors import ConfigError
from rag.grounding.llm_judge import LLMSupportJudge
from rag.grounding.support import LexicalSupportJudge
from rag.protocols import Embedder, Generator, Support, YesNoScorer


class EnsembleSupportJudge:
    """Implements SupportJudge; needs a generator with the YesNoScorer capability."""

    def __init__(self, generator: Generator, settings: GroundingSettings, embedder: Embedder | None) -> None:
        if not isinstance(generator, YesNoScorer):
            raise ConfigError(
                f"grounding.judge='ensemble' needs P(yes) from the generator's logits, which "
                f"{getattr(generator, 'name', type(generator).__name__)} does not give (a remote "
                "server returns text only); use grounding.judge 'llm' or 'support'"
            )
        self.llm = LLMSupportJudge(generator, settings)  # its yes/no mode: P(yes) from the logits
        self.settings = settings
        self.lexical = LexicalSupportJudge(settings, embedder)

    def judge(self, statement: str, contexts: Sequence[str]) -> Support:
        return self.judge_many([statement], contexts)[0]

    def judge_many(self, statements: Sequence[str], contexts: Sequence[str]) -> list[Support]:
        n = self.settings.ensemble.evidence_sentences
        out = []
        for a in self.lexical.analyse(statements, contexts, n):
            if not a.features.checkable:
                out.append(a.support)
                continue
            p_yes = self.yes_probability(a.support.text, a.evidence)
            score = combined_probability(self.settings, self.lexical.logit(a.features), p_yes)
            out.append(
                replace(
                    a.support,
                    score=score,
                    supported=score >= self.settings.min_support,
                    reason=f"ensemble: P(supported) = {score:.2f} from LLM P(yes) = {p_yes:.2f} and "
                    f"lexical {a.support.score:.2f} ({a.support.reason})",
                )
            )
        return out

    def yes_probability(self, statement: str, evidence: Sequence[str]) -> float:
        """P(yes) for "is the statement supported?" given only the evidence sentences."""
        return self.llm.probability(statement, [" ".join(evidence)])


def combined_probability(settings: GroundingSettings, z_lexical: float, p_yes: float) -> float:
    """sigmoid(bias + lexical * z_lexical + llm * logit(clipped P(yes)))."""
    e = settings.ensemble
    p = min(max(p_yes, e.llm_probability_eps), 1.0 - e.llm_probability_eps)
    z = e.bias + e.lexical * z_lexical + e.llm * math.log(p / (1.0 - p))
    return 1.0 / (1.0 + math.exp(-z))
