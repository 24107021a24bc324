"""Answer generation backends, chosen by ``generator.backend`` (rag.registry kind ``generator``):
``llamacpp`` (local GGUF, the default), ``transformers`` (local GGUF, fp32) or ``openai`` (any
compatible server), or a class of your own as ``"package.module:ClassName"``, constructed with
the generator settings.

Backends are imported only when chosen, so an OpenAI-endpoint deployment never imports torch.
"""

from __future__ import annotations

from rag import registry
from rag.config import GeneratorSettings
from rag.protocols import Generator


def make_generator(settings: GeneratorSettings) -> Generator:
    """Build the configured generator; constructors are cheap, models load on ``load()`` or on
    first use (``rag.components.build_generator`` loads it)."""
    return registry.build("generator", str(settings.backend), settings, setting="generator.backend")


__all__ = ["make_generator"]
