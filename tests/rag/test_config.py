"""Where settings come from, and that configs/default.yaml documents exactly the Python defaults.

Every test uses values that differ from the defaults, so each one fails when its source (YAML,
environment, override) stops being read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from rag.config import DEFAULT_CONFIG, GroundingSettings, Settings, load_settings
from rag.config_check import secret_paths, section_model
from rag.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RAG_* variable from the shell that runs the tests may leak into them."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("RAG_"):
            monkeypatch.delenv(name)


def write_yaml(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


NON_DEFAULT = {
    "index_dir": "/tmp/yaml-index",
    "retrieval": {"top_k": 7, "min_score": 0.42},
    "grounding": {"min_support": 0.61, "weights": {"bias": -1.5}},
    "server": {"port": 9123, "max_question_chars": 500},
    "metrics": {"context_relevance_min_cosine": 0.6, "correctness_f1_weight": 0.5},
    "embedding": {"cache_dir": "~/onnx-elsewhere"},
}


def test_a_yaml_file_with_non_default_values_is_loaded(tmp_path: Path) -> None:
    s = load_settings(config_file=write_yaml(tmp_path, NON_DEFAULT))
    assert s.index_dir == Path("/tmp/yaml-index")
    assert (s.retrieval.top_k, s.retrieval.min_score) == (7, 0.42)
    assert s.grounding.min_support == 0.61 and s.grounding.weights.bias == -1.5
    # a key left out of a section keeps its default, even next to one that is set
    assert s.grounding.weights.coverage == GroundingSettings().weights.coverage
    assert (s.server.port, s.server.max_question_chars) == (9123, 500)
    assert s.metrics.context_relevance_min_cosine == 0.6 and s.metrics.correctness_f1_weight == 0.5
    assert s.embedding.cache_dir == Path.home() / "onnx-elsewhere"  # ~ expanded


def test_rag_config_names_the_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CONFIG", str(write_yaml(tmp_path, NON_DEFAULT)))
    assert load_settings().retrieval.top_k == 7


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RETRIEVAL__TOP_K", "9")
    monkeypatch.setenv("RAG_GROUNDING__WEIGHTS__BIAS", "-2.25")
    s = load_settings(config_file=write_yaml(tmp_path, NON_DEFAULT))
    assert s.retrieval.top_k == 9 and s.grounding.weights.bias == -2.25
    assert s.retrieval.min_score == 0.42  # the rest of the section still from YAML


def test_override_beats_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RETRIEVAL__TOP_K", "9")
    monkeypatch.setenv("RAG_INDEX_DIR", "/tmp/from-env")
    s = load_settings(
        config_file=write_yaml(tmp_path, NON_DEFAULT),
        **{"retrieval.top_k": 3, "index_dir": Path("/tmp/from-flag")},
    )
    assert s.retrieval.top_k == 3 and s.index_dir == Path("/tmp/from-flag")
    assert s.server.port == 9123  # untouched keys still from YAML


def test_an_override_of_none_means_not_given(tmp_path: Path) -> None:
    s = load_settings(config_file=write_yaml(tmp_path, NON_DEFAULT), **{"retrieval.top_k": None})
    assert s.retrieval.top_k == 7


def _fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every leaf key of the settings, as a path (grounding.weights.bias)."""
    out: set[tuple[str, ...]] = set()
    for name in model.model_fields:
        inner = section_model(model, (name,))
        out |= _fields(inner, (*prefix, name)) if inner else {(*prefix, name)}
    return out


def _keys(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for k, v in data.items():
        out |= _keys(v, (*prefix, k)) if isinstance(v, dict) else {(*prefix, k)}
    return out


def test_default_yaml_names_every_setting_except_secrets() -> None:
    """So the documented file and the model cannot drift: a new field must be added (with its
    comment) to configs/default.yaml. Secrets are only mentioned in comments there."""
    written = _keys(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    secrets = set(secret_paths(Settings))
    assert _fields(Settings) - secrets - written == set(), "missing from configs/default.yaml"
    assert written - _fields(Settings) == set(), "in configs/default.yaml but not a setting"
    assert secrets and not secrets & written


def test_default_yaml_loads_to_exactly_the_python_defaults() -> None:
    """One value, written twice: the file documents the defaults, it does not change them."""
    from_yaml = load_settings(config_file=DEFAULT_CONFIG)
    for name in Settings.model_fields:
        section = section_model(Settings, (name,))
        expected = section().model_dump() if section else Settings.model_fields[name].default
        got = getattr(from_yaml, name)
        assert (got.model_dump() if section else got) == expected, name


@pytest.mark.parametrize(
    ("path", "env"),
    [
        (("generator", "api_key"), "RAG_GENERATOR__API_KEY"),
        (("server", "admin_api_key"), "RAG_SERVER__ADMIN_API_KEY"),
    ],
)
def test_a_secret_in_yaml_is_refused(tmp_path: Path, path: tuple[str, str], env: str) -> None:
    cfg = write_yaml(tmp_path, {path[0]: {path[1]: "sk-not-here"}})
    with pytest.raises(ConfigError, match=f"{'.'.join(path)} is a secret.*environment.*{env}") as info:
        load_settings(config_file=cfg)
    assert "sk-not-here" not in str(info.value)


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_GENERATOR__API_KEY", "sk-env")
    monkeypatch.setenv("RAG_SERVER__ADMIN_API_KEY", "admin-env")
    s = load_settings()
    assert s.generator.api_key is not None and s.generator.api_key.get_secret_value() == "sk-env"
    assert s.server.admin_api_key is not None
    assert "admin-env" not in repr(s)


def test_bad_values_are_refused_with_the_field_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CHUNKING__OVERLAP_TOKENS", "500")
    with pytest.raises(
        ConfigError, match=r"RAG_CHUNKING__OVERLAP_TOKENS.*chunking\.overlap_tokens \(500\) must be smaller"
    ):
        load_settings()


def test_a_question_bound_above_the_schema_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"server\.max_question_chars = 5000"):
        load_settings(**{"server.max_question_chars": 5000})


def test_missing_config_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_settings(config_file=tmp_path / "missing.yaml")
    monkeypatch.setenv("RAG_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises((ConfigError, FileNotFoundError), match="RAG_CONFIG"):
        load_settings()
