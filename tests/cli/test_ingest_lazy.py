"""`rag ingest` loads the embedding model only when some file needs embedding."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from rag.embedding import factory


def test_a_no_op_cli_re_ingest_does_not_load_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The relay listens on TCP port 7341.", encoding="utf-8")
    loads: list[str] = []
    real = factory.make_embedder

    def counting(settings):  # type: ignore[no-untyped-def]
        loads.append(settings.backend)
        return real(settings)

    monkeypatch.setattr(factory, "make_embedder", counting)
    runner = CliRunner()
    args = ["ingest", str(docs), "--index", str(tmp_path / "index")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert loads == ["onnx-int8"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "1 unchanged" in again.output, again.output
    assert loads == ["onnx-int8"]  # not loaded a second time
