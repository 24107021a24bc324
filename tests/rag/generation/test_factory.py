"""make_generator: backend selection by name or by a user's dotted class path."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import registry
from rag.config import GeneratorSettings
from rag.errors import ConfigError
from rag.generation import make_generator
from rag.generation.openai_backend import OpenAIGenerator
from rag.protocols import Generation, GenerationParams, Generator, Message

PLUGIN = """
from rag.protocols import Generation


class EchoGenerator:
    def __init__(self, settings):
        self.settings = settings
        self.name = "echo:" + settings.model

    def generate(self, messages, params):
        return Generation(messages[-1]["content"])

    def stream(self, messages, params):
        yield messages[-1]["content"]


class NotAGenerator:
    def __init__(self, settings):
        pass
"""


def _settings(backend: str, **extra: object) -> GeneratorSettings:
    # model_copy skips validation: GeneratorSettings.backend is a Literal today, so names outside
    # it can only reach make_generator this way (see the note in rag/generation/__init__.py).
    return GeneratorSettings(**extra).model_copy(update={"backend": backend})  # type: ignore[arg-type]


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "my_echo_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_echo_plugin"
    sys.modules.pop("my_echo_plugin", None)


def test_transformers_backend_is_cheap_to_construct() -> None:
    generator = make_generator(GeneratorSettings(backend="transformers", model="/nowhere/model.gguf"))
    assert isinstance(generator, Generator)
    assert generator.name == "transformers:/nowhere/model.gguf"  # nothing was loaded or resolved


def test_openai_backend() -> None:
    generator = make_generator(GeneratorSettings(backend="openai", model="gpt-x"))
    assert isinstance(generator, OpenAIGenerator) and generator.name == "openai:gpt-x"


def test_unknown_backend_lists_valid_names() -> None:
    listed = ", ".join(repr(n) for n in registry.names("generator"))
    assert "'openai'" in listed and "'transformers'" in listed
    expected = re.escape(f"generator.backend='no-such-backend' is unknown; use one of {listed}")
    with pytest.raises(ConfigError, match=expected):
        make_generator(_settings("no-such-backend"))


def test_dotted_path_builds_user_class(plugin_module: str) -> None:
    generator = make_generator(_settings(f"{plugin_module}:EchoGenerator", model="m"))
    assert generator.name == "echo:m"
    messages: list[Message] = [{"role": "user", "content": "hi"}]
    assert generator.generate(messages, GenerationParams()) == Generation("hi")


def test_dotted_path_errors(plugin_module: str) -> None:
    not_one = r"built a NotAGenerator, which is not a Generator \(missing: generate, name, stream\)"
    with pytest.raises(ConfigError, match=not_one):
        make_generator(_settings(f"{plugin_module}:NotAGenerator"))
    with pytest.raises(ConfigError, match="has no 'Missing'"):
        make_generator(_settings(f"{plugin_module}:Missing"))
    with pytest.raises(ConfigError, match="cannot import"):
        make_generator(_settings("no_such_module_xyz:Thing"))
