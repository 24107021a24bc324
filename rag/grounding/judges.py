"""Build the support judge named in config (``grounding.judge``): one place for both paths."""

from __future__ import annotations

from rag.config import GroundingSettings
from rag.errors import ConfigError
from rag.grounding.llm_judge import LLMSupportJudge
from rag.grounding.support import LexicalSupportJudge
from rag.protocols import Embedder, Generator, SupportJudge

JUDGES = ("support", "llm")


def make_support_judge(
    name: str,
    settings: GroundingSettings,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
) -> SupportJudge:
    """``support``: lexical + embedding (deterministic). ``llm``: the generator, with the lexical
    judge supplying the evidence sentence and missing terms."""
    lexical = LexicalSupportJudge(settings, embedder)
    if name == "support":
        return lexical
    if name == "llm":
        if generator is None:
            raise ConfigError("judge 'llm' needs a generator; configure generator.* or use judge 'support'")
        return LLMSupportJudge(generator, settings, evidence_judge=lexical)
    raise ConfigError(f"judge={name!r} is unknown; use one of: {', '.join(JUDGES)}")
