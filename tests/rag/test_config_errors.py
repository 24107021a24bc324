"""A mistake in the configuration fails at start-up, naming the key, its section, where it came
from and, when close, the key probably meant (issue 10). Nothing is silently dropped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from rag.config import DEFAULT_CONFIG, Settings, load_settings
from rag.config_check import section_model
from rag.errors import ConfigError, RagError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("RAG_"):
            monkeypatch.delenv(name)


def _typo(key: str) -> str:
    """A plausible misspelling: the last two letters swapped (top_k -> top_k with 'k_' etc.), or
    a letter added where swapping changes nothing (address)."""
    swapped = key[:-2] + key[-1] + key[-2] if len(key) > 3 else key
    return swapped if swapped != key else key + "x"


SECTIONS = [name for name in Settings.model_fields if section_model(Settings, (name,)) is not None]


def test_every_section_is_checked() -> None:
    assert {"embedding", "chunking", "ingest", "retrieval", "generator", "grounding", "server"} <= set(
        SECTIONS
    )
    assert {"evaluate", "metrics"} <= set(SECTIONS)


@pytest.mark.parametrize("section", SECTIONS)
def test_a_yaml_typo_in_each_section_fails_naming_key_section_and_file(tmp_path: Path, section: str) -> None:
    model = section_model(Settings, (section,))
    assert model is not None
    key = next(k for k in model.model_fields if section_model(model, (k,)) is None)
    wrong = _typo(key)
    cfg = tmp_path / "x.yaml"
    cfg.write_text(yaml.safe_dump({section: {wrong: 1}}))
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=cfg)
    msg = str(info.value)
    assert f"unknown setting {section}.{wrong}" in msg
    assert str(cfg) in msg
    assert f"did you mean {section}.{key}?" in msg


def test_the_example_from_the_issue(tmp_path: Path) -> None:
    cfg = tmp_path / "x.yaml"
    cfg.write_text("retrieval:\n  topk: 9\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=cfg)
    assert str(info.value) == f"unknown setting retrieval.topk (from {cfg}); did you mean retrieval.top_k?"


def test_a_typo_in_a_nested_model_is_caught(tmp_path: Path) -> None:
    cfg = tmp_path / "x.yaml"
    cfg.write_text("grounding:\n  weights:\n    biass: -2\n")
    with pytest.raises(
        ConfigError, match=r"grounding\.weights\.biass .*did you mean grounding\.weights\.bias\?"
    ):
        load_settings(config_file=cfg)


def test_a_misspelt_section_is_caught(tmp_path: Path) -> None:
    cfg = tmp_path / "x.yaml"
    cfg.write_text("retreival:\n  top_k: 9\n")
    with pytest.raises(ConfigError, match=r"unknown setting retreival .*did you mean retrieval\?"):
        load_settings(config_file=cfg)


def test_several_problems_are_one_line_each(tmp_path: Path) -> None:
    cfg = tmp_path / "x.yaml"
    cfg.write_text("retrieval:\n  topk: 9\nserver:\n  port: 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=cfg)
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and lines[0] == "invalid configuration:"
    assert any("retrieval.topk" in line for line in lines)
    assert any("server.port = 0" in line and "greater than or equal to 1" in line for line in lines)


def test_an_env_typo_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_GENERATOR__TIMEOUT", "5")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "unknown setting generator.timeout (from environment variable RAG_GENERATOR__TIMEOUT); "
        "did you mean generator.timeout_s (RAG_GENERATOR__TIMEOUT_S)?"
    )


def test_a_single_underscore_after_a_section_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_SERVER_PORT", "9000")
    with pytest.raises(ConfigError, match=r"RAG_SERVER_PORT names no setting.*RAG_SERVER__PORT"):
        load_settings()


def test_unrelated_top_level_rag_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prefix is shared with RAG_CONFIG and tooling switches; only plain misspellings fail."""
    monkeypatch.setenv("RAG_NOPE", "1")
    monkeypatch.setenv("RAG_TEST_CRASH_AT", "")
    assert load_settings().retrieval.top_k == 4


def test_a_cli_override_typo_fails() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**{"retrieval.topk": 3})
    assert str(info.value) == (
        "unknown setting retrieval.topk (from a command-line override); did you mean retrieval.top_k?"
    )


def test_an_unknown_top_level_override_lists_the_sections() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting nope .*top level has: index_dir, .*retrieval"):
        load_settings(nope=1)


def test_a_bad_value_names_key_value_and_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RETRIEVAL__TOP_K", "0")
    with pytest.raises(ConfigError, match=r"setting retrieval\.top_k = '0' \(from environment variable"):
        load_settings()


def test_broken_json_for_a_whole_section_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_SERVER", "{not json")
    with pytest.raises(ConfigError, match="server"):
        load_settings()


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "x.yaml"
    cfg.write_text("retrieval: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{cfg} is not valid YAML"):
        load_settings(config_file=cfg)


def test_a_config_error_is_a_rag_error_so_the_cli_prints_one_line() -> None:
    assert issubclass(ConfigError, RagError)


def test_valid_files_still_load(tmp_path: Path) -> None:
    assert load_settings(config_file=DEFAULT_CONFIG).retrieval.top_k == 4
    cfg = tmp_path / "x.yaml"
    cfg.write_text("retrieval:\n  top_k: 6\ngrounding:\n  weights:\n    bias: -2\n")
    s = load_settings(config_file=cfg)
    assert s.retrieval.top_k == 6 and s.grounding.weights.bias == -2
