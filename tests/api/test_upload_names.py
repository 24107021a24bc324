"""Property tests of upload file names (api/routes/documents.py): whatever name a client sends,
what reaches the file system is one plain component under uploads/<sha256>/, or the upload is
refused with 422. No generated name may produce a path outside the uploads directory."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import HTTPException
from hypothesis import given, settings
from hypothesis import strategies as st

from api.jobs import uploads_dir
from api.routes.documents import MAX_NAME_BYTES, _Part, _safe_name, _store

# Pieces that path tricks are made of, so examples are not just random letters.
PIECES = ["..", ".", "/", "\\", "C:", "etc", "passwd", "a.pdf", "~", "%2e"]
PIECES += ["\x00", " ", "\n", "\x1b", "\u202e"]  # NUL, space, control and format characters
NAMES = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=5)), max_size=12).map("".join),
)
PLAIN = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,60}[A-Za-z0-9]", fullmatch=True)


def _reduced(raw: str) -> str | None:
    """The stored name, or None when the name is refused (422)."""
    try:
        return _safe_name(raw)
    except HTTPException as exc:
        assert exc.status_code == 422 and "file name" in str(exc.detail)
        return None


@pytest.fixture(scope="module")
def index_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:  # module scope: hypothesis reruns the test body
        yield Path(tmp) / "index"


@settings(max_examples=500, deadline=None)
@given(NAMES)
def test_a_reduced_name_is_one_plain_component(raw: str) -> None:
    name = _reduced(raw)
    if name is None:
        return
    assert name not in ("", ".", "..") and not name.startswith(".")
    assert "/" not in name and "\\" not in name
    assert all(ch.isprintable() for ch in name)  # no NUL, no control or format characters
    assert name == name.strip() and len(name.encode()) <= MAX_NAME_BYTES
    assert Path(name).name == name and not Path(name).is_absolute()
    assert _safe_name(name) == name  # reducing again changes nothing


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_no_name_is_stored_outside_the_uploads_directory(index_dir: Path, raw: str) -> None:
    name = _reduced(raw)
    if name is None:
        return
    incoming = index_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    part = _Part()
    part.path, part.filename = incoming / "received", name
    part.path.write_bytes(raw.encode("utf-8", "replace"))
    part.sha = hashlib.sha256(part.path.read_bytes())
    stored = _store(part, index_dir)
    uploads = uploads_dir(index_dir).resolve()
    final = stored.path.resolve()
    assert final.parent.parent == uploads and final.parent.name == part.sha.hexdigest()
    assert final.name == name and final.is_file()


@given(PLAIN)
def test_a_plain_name_is_kept_as_sent(raw: str) -> None:
    assert _safe_name(raw) == raw


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\a.pdf", "a.pdf"),
        ("/abs/path/report.md", "report.md"),
        ("a\x00b.txt", "ab.txt"),
        ("..\\..\\secret.txt", "secret.txt"),
        (".hidden", "hidden"),
        ("\u202ereport.pdf", "report.pdf"),  # a right-to-left override is a format character
    ],
)
def test_examples_of_reduction(raw: str, stored: str) -> None:
    assert _safe_name(raw) == stored


@pytest.mark.parametrize("raw", ["", "..", ".", "/", "a/..", "\x00", " . ", "x" * (MAX_NAME_BYTES + 1)])
def test_names_with_nothing_safe_left_are_refused(raw: str) -> None:
    assert _reduced(raw) is None
