"""`rag ingest` on paths it cannot read, and on PDFs pypdf complains about: a real `rag` process.

Permission tests need a process that permission bits apply to. The suite runs as root, and root
reads a chmod-000 folder, so as root the ingest runs under `setpriv` with the two capabilities
that bypass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) dropped: still uid 0 (so
the interpreter under /root and the embedder cache stay reachable), but a chmod-000 path really
is unreadable to it. As any other user no wrapper is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fpdf import FPDF

from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.index.reader import IndexReader
from rag.protocols import Embedder

DROP_DAC = "-dac_override,-dac_read_search"
GOOD = "The zephyr-relay daemon listens on TCP port 7341 and resumes dropped transfers."
LOCKED = "Quarterly snapshot audits are filed under ticket ZX-9931 by the storage team."


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (see the module docstring)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    prefix = [setpriv, f"--inh-caps={DROP_DAC}", f"--bounding-set={DROP_DAC}"] if setpriv else []
    if not prefix or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without a working setpriv: permissions cannot be tested")
    return prefix


def rag(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(index_dir=tmp_path / "index")


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[list[Path]]:
    """Paths to chmod 000 for the test; their modes are restored afterwards for clean-up."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        path.chmod(0o755)


def test_sync_keeps_the_documents_of_a_folder_it_cannot_list(
    tmp_path: Path, settings: Settings, embedder: Embedder, locked: list[Path]
) -> None:
    prefix = _unprivileged()
    docs = tmp_path / "docs"
    (docs / "team").mkdir(parents=True)
    (docs / "relay.md").write_text(GOOD)
    (docs / "team" / "audits.md").write_text(LOCKED)
    assert ingest([docs], settings, embedder).added == 2
    (docs / "team").chmod(0)
    locked.append(docs / "team")

    r = rag("ingest", str(docs), "--index", str(settings.index_dir), "--sync", "--json", prefix=prefix)

    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["deleted"], summary["failed"], summary["unchanged"]) == (0, 1, 1), summary
    [error] = summary["errors"]
    assert error["path"] == (docs / "team").as_posix()
    assert "cannot list this folder" in error["error"] and "chmod a+rx" in error["error"]
    sources = {Path(d["source"]).name for d in IndexReader.open(settings.index_dir).documents()}
    assert sources == {"relay.md", "audits.md"}


def test_unreadable_and_missing_paths_on_the_command_line_are_reported_and_the_rest_indexed(
    tmp_path: Path, locked: list[Path]
) -> None:
    prefix = _unprivileged()
    (tmp_path / "good.md").write_text(GOOD)
    (tmp_path / "locked.md").write_text(LOCKED)
    (tmp_path / "locked.md").chmod(0)
    (tmp_path / "shut").mkdir()
    (tmp_path / "shut" / "inside.md").write_text(LOCKED)
    (tmp_path / "shut").chmod(0o600)  # listable by nobody without x: files inside cannot be opened
    (tmp_path / "dead.md").symlink_to(tmp_path / "nowhere.md")
    (tmp_path / "loop.md").symlink_to(tmp_path / "loop.md")
    os.mkfifo(tmp_path / "pipe.txt")
    locked += [tmp_path / "locked.md", tmp_path / "shut"]
    expected = {
        "locked.md": "permission denied",
        "inside.md": "permission denied",
        "dead.md": "broken symbolic link",
        "loop.md": "symbolic link loop",
        "pipe.txt": "not a regular file",
        "missing.md": "does not exist",
    }
    named = [tmp_path / "shut" / "inside.md" if n == "inside.md" else tmp_path / n for n in expected]
    index = tmp_path / "index"

    r = rag(
        "ingest", *map(str, [*named, tmp_path / "good.md"]), "--index", str(index), "--json", prefix=prefix
    )

    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["added"], summary["failed"]) == (1, len(expected)), summary
    errors = {Path(e["path"]).name: e["error"] for e in summary["errors"]}
    for name, phrase in expected.items():
        assert phrase in errors[name] and name in errors[name], (name, errors.get(name))


def _malformed_pdf(text: str) -> bytes:
    """A valid fpdf2 PDF whose xref offsets all point 3 bytes off: pypdf logs "Ignoring wrong
    pointing object" for each object, finds them by scanning, and reads the text anyway."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.cell(text=text)
    data = bytes(pdf.output())
    head, xref = data[: data.index(b"xref")], data[data.index(b"xref") :]
    shifted = re.sub(rb"(\d{10}) 00000 n", lambda m: b"%010d 00000 n" % (int(m.group(1)) + 3), xref)
    return head + shifted


def test_pypdf_warnings_do_not_reach_the_console(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "shifted.pdf").write_bytes(_malformed_pdf(GOOD))

    r = rag("ingest", str(docs), "--index", str(tmp_path / "index"))  # with the progress bars

    assert r.returncode == 0, r.stderr
    assert "1 added" in r.stdout and "0 failed" in r.stdout, r.stdout
    assert "wrong pointing object" not in r.stderr and "pypdf" not in r.stderr, r.stderr
