"""load_settings(config_file=...): the CLI's --config as an argument, not an environment variable."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from rag.config import load_settings
from rag.errors import ConfigError


def _yaml(path: Path, top_k: int) -> Path:
    path.write_text(f"index_dir: {path.parent / f'index-{top_k}'}\nretrieval:\n  top_k: {top_k}\n")
    return path


def test_two_config_files_in_one_process_give_two_settings_and_leave_the_env_alone(tmp_path: Path) -> None:
    env_before = dict(os.environ)
    first = load_settings(config_file=_yaml(tmp_path / "a.yaml", 3))
    second = load_settings(config_file=_yaml(tmp_path / "b.yaml", 9))
    assert (first.retrieval.top_k, second.retrieval.top_k) == (3, 9)
    assert first.index_dir != second.index_dir
    assert dict(os.environ) == env_before
    assert load_settings().retrieval.top_k == 4  # back to configs/default.yaml


def test_the_argument_wins_over_rag_config_and_flags_still_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_CONFIG", str(_yaml(tmp_path / "env.yaml", 5)))
    assert load_settings().retrieval.top_k == 5
    assert load_settings(config_file=_yaml(tmp_path / "arg.yaml", 7)).retrieval.top_k == 7
    assert load_settings(tmp_path / "arg.yaml", **{"retrieval.top_k": 2}).retrieval.top_k == 2


def test_threads_do_not_see_each_others_file(tmp_path: Path) -> None:
    files = {k: _yaml(tmp_path / f"{k}.yaml", k) for k in (2, 6, 8)}
    seen: dict[int, int] = {}

    def load(k: int) -> None:
        for _ in range(20):
            seen[k] = load_settings(config_file=files[k]).retrieval.top_k
            if seen[k] != k:
                return

    threads = [threading.Thread(target=load, args=(k,)) for k in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {2: 2, 6: 6, 8: 8}


def test_a_missing_config_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml does not exist"):
        load_settings(config_file=missing)
