"""PDF (.pdf) through pypdf: text per page, owner-password PDFs opened, pypdf's chatter at DEBUG."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.loaders.common import PAGE_SEPARATOR, BytesLoader, clean_text, display_name
from rag.errors import LoaderError
from rag.types import Page

if TYPE_CHECKING:  # pypdf is imported when a PDF is parsed: `rag ingest` with nothing to parse
    from pypdf import PdfReader  # never pays for it

log = logging.getLogger(__name__)


class PdfLoader(BytesLoader):
    """One Page per PDF page (even empty ones) so citations can give real page numbers."""

    suffixes = (".pdf",)

    def parse(self, data: bytes, path: Path) -> tuple[str, list[Page]]:
        return _pdf_text(data, path)


def _pdf_text(data: bytes, path: Path) -> tuple[str, list[Page]]:
    texts = _pdf_page_texts(data, path)
    if not any(texts):
        raise LoaderError(
            f"{display_name(path)}: PDF has {len(texts)} page(s) but no extractable text; it may be scanned "
            "images, run OCR first (e.g. ocrmypdf) and ingest the result."
        )
    pages: list[Page] = []
    offset = 0
    for number, text in enumerate(texts, start=1):
        pages.append(Page(number=number, start=offset, end=offset + len(text)))
        offset += len(text) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(texts), pages


def _pdf_page_texts(data: bytes, path: Path) -> list[str]:
    """Any pypdf failure becomes a LoaderError: broken PDFs raise a zoo of exception types.

    The two failures that are not the file's fault get their own message: a password the user
    must supply, and a missing decryption library (AES PDFs need ``cryptography``)."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        with _pypdf_to_debug(path):
            reader = PdfReader(io.BytesIO(data))
            _unlock(reader, path)
            return [clean_text(page.extract_text() or "").strip() for page in reader.pages]
    except LoaderError:
        raise
    except FileNotDecryptedError as exc:
        raise _password_protected(path) from exc
    except DependencyError as exc:
        raise LoaderError(
            f"{display_name(path)}: PDF is encrypted with AES and cannot be decrypted without the "
            f"'cryptography' package ({exc}); install it (pip install cryptography) and ingest again."
        ) from exc
    except Exception as exc:
        raise LoaderError(
            f"{display_name(path)}: corrupt or unreadable PDF ({type(exc).__name__}: {exc}); "
            "re-export or repair it (e.g. qpdf in.pdf out.pdf)."
        ) from exc


def _unlock(reader: PdfReader, path: Path) -> None:
    """Many PDFs are "encrypted" only with an owner password (permissions-only: any viewer opens
    them); the empty user password opens them, and they are indexed like any other PDF."""
    from pypdf import PasswordType

    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise _password_protected(path)


def _password_protected(path: Path) -> LoaderError:
    return LoaderError(
        f"{display_name(path)}: PDF is password-protected (it needs a password to open); decrypt it first "
        "(e.g. qpdf --decrypt --password=PASSWORD in.pdf out.pdf) and ingest the copy."
    )


class _DebugRelay(logging.Handler):
    """Re-logs pypdf's records at DEBUG under this module's logger, naming the file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("%s: pypdf %s: %s", display_name(self.path), record.levelname.lower(), record.getMessage())


@contextlib.contextmanager
def _pypdf_to_debug(path: Path) -> Iterator[None]:
    """pypdf reports the malformations it works around ("Ignoring wrong pointing object") as
    warnings on its logger, which with no handler configured Python prints on stderr, over the
    CLI's progress bar. They are not the user's problem (the text was read), so they go to our
    log at DEBUG; pypdf's warnings.warn calls likewise."""
    pypdf_log = logging.getLogger("pypdf")
    relay = _DebugRelay(path)
    propagate = pypdf_log.propagate
    pypdf_log.addHandler(relay)
    pypdf_log.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for warning in caught:
            log.debug("%s: pypdf warning: %s", display_name(path), warning.message)
    finally:
        pypdf_log.removeHandler(relay)
        pypdf_log.propagate = propagate
