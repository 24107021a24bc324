"""Issue 9, ingest hardening: encrypted PDFs, binary data past the sniff window, filesystem errors
that used to escape the per-file handling, and size messages in MiB. Real files in tmp_path.

(Permission errors need a process that file modes apply to; those tests run `rag ingest` in a
subprocess, in tests/cli/test_ingest_hardening.py.)
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from ingest.loaders import SNIFF_BYTES, load_document
from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.errors import LoaderError
from rag.index.reader import IndexReader
from rag.protocols import Embedder
from rag.units import mib_to_bytes

SECRET = "The quokka ledger lists vault 4471 under the harbour archive."


def _pdf(text: str) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.cell(text=text)
    return bytes(pdf.output())


def _encrypted(algorithm: str, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf(SECRET))))
    writer.encrypt(user_password=user_password, owner_password="x", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(index_dir=tmp_path / "index")


# --------------------------------------------------------------------------- encrypted PDFs


@pytest.mark.parametrize("algorithm", ["AES-128", "AES-256"])
def test_a_permissions_only_aes_pdf_is_indexed(
    tmp_path: Path, settings: Settings, embedder: Embedder, algorithm: str
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ledger.pdf").write_bytes(_encrypted(algorithm, user_password=""))
    summary = ingest([tmp_path / "docs"], settings, embedder)
    assert (summary.added, summary.failed) == (1, 0), summary.errors
    hit = IndexReader.open(settings.index_dir).search(embedder.embed_query("quokka ledger vault"), 1)[0]
    assert "4471" in hit.chunk.text


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_a_pdf_that_needs_a_password_says_so(tmp_path: Path, algorithm: str) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(_encrypted(algorithm, user_password="hunter2"))
    with pytest.raises(LoaderError) as err:
        load_document(path)
    message = str(err.value)
    assert "locked.pdf" in message and "password-protected" in message and "qpdf --decrypt" in message
    assert "corrupt" not in message


def test_a_corrupt_pdf_keeps_its_own_message(tmp_path: Path) -> None:
    path = tmp_path / "cut.pdf"
    path.write_bytes(_pdf(SECRET)[:300])
    with pytest.raises(LoaderError) as err:
        load_document(path)
    assert "corrupt or unreadable PDF" in str(err.value) and "password" not in str(err.value)


def test_an_aes_pdf_without_the_cryptography_package_names_the_package(tmp_path: Path) -> None:
    """The environment the bug came from: pypdf without `cryptography`. The subprocess blocks the
    import (sys.modules entry None) before pypdf picks its crypto provider; everything else is
    the real loader on a real AES file. It used to say "corrupt or unreadable PDF"."""
    path = tmp_path / "ledger.pdf"
    path.write_bytes(_encrypted("AES-128", user_password=""))
    script = (
        "import sys; sys.modules['cryptography'] = None; sys.modules['Crypto'] = None\n"
        "from pathlib import Path\n"
        "from ingest.loaders import load_document\n"
        "from rag.errors import LoaderError\n"
        "try:\n"
        f"    load_document(Path({str(path)!r}))\n"
        "except LoaderError as exc:\n"
        "    print(exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "pip install cryptography" in r.stdout and "corrupt" not in r.stdout, r.stdout


# --------------------------------------------------------------------------- binary content


def test_binary_data_after_the_sniff_window_fails_the_file(
    tmp_path: Path, settings: Settings, embedder: Embedder
) -> None:
    text = ("Plain notes about the harbour archive. " * 300)[:10_240].encode()
    assert len(text) > SNIFF_BYTES
    path = tmp_path / "notes.txt"
    path.write_bytes(text + bytes(range(256)) * 16)
    with pytest.raises(LoaderError) as err:
        load_document(path)
    assert "looks like a binary file" in str(err.value) and "from byte 10240" in str(err.value)
    summary = ingest([path], settings, embedder)
    assert (summary.failed, summary.chunks) == (1, 0)


def test_binary_without_nul_bytes_after_the_sniff_window_fails_the_file(tmp_path: Path) -> None:
    text = b"a line of text\n" * 1000  # 15 kB
    path = tmp_path / "notes.md"
    path.write_bytes(text + bytes(b % 31 + 1 for b in range(4000)) + text)
    with pytest.raises(LoaderError, match=f"from byte {len(text)} "):
        load_document(path)


def test_stray_control_characters_in_long_text_are_still_text(tmp_path: Path) -> None:
    """No false alarms: a few control bytes, even in a short last window, stay a text file."""
    text = b"a line of text\n" * 1000 + b"bell \x07 and escape \x1b[0m\n" + b"tail\x01\n"
    path = tmp_path / "log.txt"
    path.write_bytes(text)
    assert "escape" in load_document(path).text


# --------------------------------------------------------------------------- filesystem errors


def test_a_symlink_loop_in_a_folder_fails_only_itself(
    tmp_path: Path, settings: Settings, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text(SECRET)
    (docs / "loop.md").symlink_to(docs / "loop.md")  # Path.resolve() raises RuntimeError on it
    summary = ingest([docs], settings, embedder, sync=True)
    assert (summary.added, summary.failed) == (1, 1), summary
    assert "symbolic link loop" in summary.errors[0]["error"]


def test_a_too_long_name_parsed_in_process_fails_only_itself(tmp_path: Path, embedder: Embedder) -> None:
    """file_timeout_s=0 parses in this process, where an OSError from stat() used to escape."""
    settings = load_settings(index_dir=tmp_path / "index", **{"ingest.file_timeout_s": 0})
    (tmp_path / "good.md").write_text(SECRET)
    too_long = tmp_path / ("x" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 1) + ".md")
    summary = ingest([too_long, tmp_path / "good.md"], settings, embedder)
    assert (summary.added, summary.failed) == (1, 1), summary
    assert "cannot be read (File name too long)" in summary.errors[0]["error"]


# --------------------------------------------------------------------------- sizes in MiB


def test_size_limit_messages_are_in_mib(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_text("word " * 60_000)  # 300000 bytes, 0.286 MiB
    with pytest.raises(LoaderError) as err:
        load_document(path, max_bytes=mib_to_bytes(0.25))
    assert "file is 0.286 MiB (300000 bytes), over the limit of 0.25 MiB (262144 bytes)" in str(err.value)


# --------------------------------------------------------------------------- metadata bounds


def _nested(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"x": value}
    return value


def test_metadata_over_its_bounds_fails_only_that_file(
    tmp_path: Path, settings: Settings, embedder: Embedder
) -> None:
    """Deeply nested metadata given to `ingest()` (as `rag ingest --metadata` does) used to be
    stored and then break every read of that document; now that file fails with the limit named
    and the others are indexed."""
    (tmp_path / "a.txt").write_text(SECRET)
    (tmp_path / "b.txt").write_text("The harbour archive opens at nine.")
    deep = (tmp_path / "a.txt").as_posix()
    summary = ingest(
        [tmp_path / "a.txt", tmp_path / "b.txt"], settings, embedder, metadata={deep: _nested(500)}
    )
    assert (summary.added, summary.failed) == (1, 1), summary
    assert "nested more than 8 levels" in summary.errors[0]["error"]
    reader = IndexReader.open(settings.index_dir)
    assert [d["source"] for d in reader.documents()] == [(tmp_path / "b.txt").as_posix()]
