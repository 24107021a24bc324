"""A folder of bad files: each is reported with its reason, the rest is indexed, nothing is lost,
and no file can hang or crash the batch (files are parsed in a worker with a time limit)."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from ingest.loaders import FORMATS, SuffixLoader
from ingest.pipeline import ParseWorker, ingest
from rag.config import Settings, load_settings
from rag.errors import LoaderError
from rag.index.reader import IndexReader
from rag.protocols import Embedder
from rag.types import Document

GOOD = "The zephyr-relay daemon listens on TCP port 7341 and resumes dropped transfers."


def _pdf(text: str | None) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    if text:
        pdf.cell(text=text)
    else:
        pdf.rect(20, 20, 100, 60, style="F")  # a "scanned" page: graphics, no text layer
    return bytes(pdf.output())


def _encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf("secret plans"))))
    writer.encrypt("user-password", "owner-password")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_bad_folder(root: Path) -> dict[str, str]:
    """Write the bad files; returns file name -> a phrase its error message must contain."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "good.md").write_text(GOOD)
    (root / "good.pdf").write_bytes(_pdf("Snapshots are pruned nightly at 03:30."))
    expected = {
        "encrypted.pdf": "password-protected",
        "corrupt.pdf": "corrupt or unreadable PDF",
        "scanned.pdf": "no extractable text",
        "empty.txt": "file is empty",
        "binary.txt": "looks like a binary file",
        "huge.md": "over the limit",
        "blank.md": "no text left",
        "fifo.txt": "not a regular file",
    }
    (root / "encrypted.pdf").write_bytes(_encrypted_pdf())
    (root / "corrupt.pdf").write_bytes(_pdf("will be cut")[:300])
    (root / "scanned.pdf").write_bytes(_pdf(None))
    (root / "empty.txt").write_bytes(b"")
    (root / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (root / "huge.md").write_text("word " * 5000)  # 25 kB, over the 0.01 MB limit set below
    (root / "blank.md").write_text("   \n\n\t  \n")
    os.mkfifo(root / "fifo.txt")
    if os.geteuid() != 0:  # root reads anything, so "unreadable" can only be tested as a user
        (root / "locked.md").write_text(GOOD)
        (root / "locked.md").chmod(0)
        expected["locked.md"] = "permission denied"
    return expected


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(index_dir=tmp_path / "index", **{"ingest.max_file_mb": 0.01})


def test_each_bad_file_is_reported_and_the_rest_is_indexed(
    tmp_path: Path, settings: Settings, embedder: Embedder
) -> None:
    folder = tmp_path / "bad"
    expected = make_bad_folder(folder)
    # Named explicitly, an unsupported type and a missing file are reported too (inside a folder
    # walk, unsupported suffixes are simply not picked up).
    (tmp_path / "notes.xyz").write_text("what format is this?")
    expected["notes.xyz"] = "unsupported file type"
    expected["missing.md"] = "does not exist"
    summary = ingest([folder, tmp_path / "notes.xyz", tmp_path / "missing.md"], settings, embedder)

    errors = {Path(e["path"]).name: e["error"] for e in summary.errors}
    assert set(errors) == set(expected)
    for name, phrase in expected.items():
        assert phrase in errors[name], (name, errors[name])
        assert name in errors[name]  # every message names its file
    assert (summary.added, summary.failed) == (2, len(expected))
    reader = IndexReader.open(settings.index_dir)
    assert sorted(Path(d["source"]).name for d in reader.documents()) == ["good.md", "good.pdf"]
    assert "7341" in reader.search(embedder.embed_query("relay port"), 1)[0].chunk.text


def test_a_file_that_turns_bad_keeps_its_indexed_version(
    tmp_path: Path, settings: Settings, embedder: Embedder
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "guide.pdf").write_bytes(_pdf("Restores go to /srv/zephyr-restore."))
    ingest([folder], settings, embedder)
    (folder / "guide.pdf").write_bytes(b"%PDF-1.7 garbage")
    summary = ingest([folder], settings, embedder, sync=True)
    assert (summary.failed, summary.deleted, summary.index_version) == (1, 0, None)
    hit = IndexReader.open(settings.index_dir).search(embedder.embed_query("where do restores go"), 1)[0]
    assert "zephyr-restore" in hit.chunk.text


# Loaders for the time-limit tests: the real ones, except for files with a given name. They run
# in the parse worker process, which unpickles them by class name, so they live at module level.
class HangingLoader(SuffixLoader):
    def load(self, path: Path, **kwargs: Any) -> Document:
        if path.name.startswith("hang"):
            time.sleep(3600)
        return super().load(path, **kwargs)


class CrashingLoader(SuffixLoader):
    def load(self, path: Path, **kwargs: Any) -> Document:
        if path.name.startswith("crash"):
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().load(path, **kwargs)


def test_a_hanging_file_is_stopped_and_the_batch_goes_on(tmp_path: Path, embedder: Embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("a.md", "hang.md", "b.md", "hang2.md", "c.md"):
        (folder / name).write_text(f"{GOOD} ({name})")
    settings = load_settings(index_dir=tmp_path / "index", **{"ingest.file_timeout_s": 1})
    started = time.monotonic()
    summary = ingest([folder], settings, embedder, loader=HangingLoader(FORMATS))
    assert time.monotonic() - started < 60
    assert (summary.added, summary.failed) == (3, 2)
    for err in summary.errors:
        assert "took longer than 1 s" in err["error"] and "RAG_INGEST__FILE_TIMEOUT_S" in err["error"]


def test_a_parser_crash_fails_only_that_file(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("a.md", "crash.md", "b.md"):
        (folder / name).write_text(GOOD)
    results = {}
    with ParseWorker(30, CrashingLoader(FORMATS)) as worker:
        for path in sorted(folder.iterdir()):
            try:
                results[path.name] = worker.load(path).text
            except LoaderError as exc:
                results[path.name] = str(exc)
    assert results["a.md"] == results["b.md"] == GOOD
    assert "parser crashed" in results["crash.md"] and f"exit code {-signal.SIGSEGV}" in results["crash.md"]


def test_the_worker_parses_like_the_loader(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    make_bad_folder(folder)
    with ParseWorker(30) as worker, ParseWorker(0) as inline:
        for path in sorted(folder.iterdir()):
            outcomes = []
            for parser in (worker, inline):
                try:
                    outcomes.append(parser.load(path, max_bytes=10_000).text)
                except LoaderError as exc:
                    outcomes.append(f"error: {exc}")
            assert outcomes[0] == outcomes[1]
