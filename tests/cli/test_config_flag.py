"""`--config FILE` as users pass it: a real `rag` process reads that file, and a bad one is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def rag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=300)


def test_config_file_chooses_the_index(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"index_dir: {tmp_path / 'from-config'}\n")
    r = rag("documents", "--config", str(cfg))
    assert r.returncode == 1
    assert "from-config" in r.stderr and "Traceback" not in r.stderr


def test_missing_config_file_is_one_red_line(tmp_path: Path) -> None:
    for command in (["info"], ["eval", str(tmp_path / "d.jsonl")]):
        r = rag(*command, "--config", str(tmp_path / "missing.yaml"))
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "error:" in lines[0] and "missing.yaml does not exist" in lines[0]


def test_python_dash_m_cli_teaches_rag() -> None:
    r = rag("--help")
    assert r.returncode == 0 and "Usage: rag " in r.stdout
    for command in ("ingest", "delete", "search", "ask", "documents", "info", "serve", "eval"):
        assert command in r.stdout


def test_a_mistake_in_the_config_file_is_one_line_naming_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("retrieval:\n  topk: 3\n")
    r = rag("search", "anything", "--config", str(cfg))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "topk" in lines[0] and "typo.yaml" in lines[0]
