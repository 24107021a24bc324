"""The built-in support judges (rag.registry kind ``judge``, setting ``grounding.judge``): one
place for the answer path and the evaluator.

A judge is built as ``factory(grounding_settings, embedder, generator)``; a class of your own named
as ``"package.module:ClassName"`` takes the same three arguments (either may be None).
"""

from __future__ import annotations

from rag import registry
from rag.config import GroundingSettings
from rag.errors import ConfigError
from rag.grounding.ensemble import EnsembleSupportJudge
from rag.grounding.llm_judge import LLMSupportJudge
from rag.grounding.support import LexicalSupportJudge
from rag.protocols import Embedder, Generator, SupportJudge


def support_judge(
    settings: GroundingSettings, embedder: Embedder | None = None, generator: Generator | None = None
) -> SupportJudge:
    """``support``: lexical + embedding, deterministic, no LLM."""
    return LexicalSupportJudge(settings, embedder)


def llm_judge(
    settings: GroundingSettings, embedder: Embedder | None = None, generator: Generator | None = None
) -> SupportJudge:
    """``llm``: the generator decides, the lexical judge supplies evidence and missing terms."""
    generator = _required(generator, "llm")
    return LLMSupportJudge(generator, settings, evidence_judge=LexicalSupportJudge(settings, embedder))


def ensemble_judge(
    settings: GroundingSettings, embedder: Embedder | None = None, generator: Generator | None = None
) -> SupportJudge:
    """``ensemble``: lexical evidence and the generator's P(yes), one calibrated probability."""
    return EnsembleSupportJudge(_required(generator, "ensemble"), settings, embedder)


def _required(generator: Generator | None, judge: str) -> Generator:
    if generator is None:
        raise ConfigError(
            f"grounding.judge='{judge}' needs a generator; configure generator.* or set "
            "grounding.judge to 'support'"
        )
    return generator


def make_support_judge(
    name: str,
    settings: GroundingSettings,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
) -> SupportJudge:
    """The judge ``name`` means (a registered name or "package.module:ClassName")."""
    return registry.build("judge", name, settings, embedder, generator, setting="grounding.judge")
