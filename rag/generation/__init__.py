"""Answer generation backends, chosen by ``generator.backend`` in the settings.

Backends are imported only when chosen, so an OpenAI-endpoint deployment never imports torch.
A user's own class can be named as ``"package.module:ClassName"``; note that this needs
``GeneratorSettings.backend`` to accept any string (it is a Literal of the built-in names today).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from rag.config import GeneratorSettings
from rag.errors import ConfigError
from rag.protocols import Generator


def _transformers(settings: GeneratorSettings) -> Generator:
    from rag.generation.transformers_backend import TransformersGenerator

    return TransformersGenerator(settings)


def _openai(settings: GeneratorSettings) -> Generator:
    from rag.generation.openai_backend import OpenAIGenerator

    return OpenAIGenerator(settings)


BACKENDS: dict[str, Callable[[GeneratorSettings], Generator]] = {
    "transformers": _transformers,
    "openai": _openai,
}


def make_generator(settings: GeneratorSettings) -> Generator:
    """Build the configured generator; constructors are cheap, models load on first use."""
    backend = str(settings.backend)
    factory = BACKENDS.get(backend)
    if factory is not None:
        return factory(settings)
    if ":" in backend:
        return _from_dotted_path(backend, settings)
    raise ConfigError(
        f"generator.backend={backend!r} is unknown; use one of {', '.join(sorted(BACKENDS))} "
        "or a class of your own as 'package.module:ClassName'."
    )


def _from_dotted_path(spec: str, settings: GeneratorSettings) -> Generator:
    """A user's own Generator class, constructed with the generator settings."""
    module_name, _, class_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"generator.backend={spec!r}: cannot import {class_name!r} from {module_name!r} ({exc})."
        ) from exc
    generator = cls(settings)
    if not isinstance(generator, Generator):
        raise ConfigError(
            f"generator.backend={spec!r} built a {type(generator).__name__}, which lacks the Generator "
            "interface (name, generate, stream)."
        )
    return generator


__all__ = ["BACKENDS", "make_generator"]
