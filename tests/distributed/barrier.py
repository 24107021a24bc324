"""A loader for the kill test: the default loader, except that the first attempt at one named file
waits to be killed. A declared test fake: what is under test is the driver's handling of a worker
that dies mid-task, and a real parser gives no moment at which "mid-task" is certain."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ingest.loaders import DEFAULT_LOADER
from rag.types import Document

HOLD_S = 120.0  # the first attempt waits this long for its SIGKILL (the test fails if it comes back)


class BarrierLoader:
    """Each attempt at ``hold`` writes ``<markers>/attempt-<n>`` holding its process id; the first
    then sleeps until the test kills that process, later ones parse as usual."""

    suffixes = DEFAULT_LOADER.suffixes

    def __init__(self, hold: str, markers: Path) -> None:
        self.hold, self.markers = hold, Path(markers)

    def load(self, path: Path, *, doc_id: str | None = None, max_bytes: int | None = None) -> Document:
        if Path(path).name == self.hold:
            attempt = len(list(self.markers.glob("attempt-*"))) + 1
            (self.markers / f"attempt-{attempt}").write_text(str(os.getpid()))
            if attempt == 1:
                time.sleep(HOLD_S)
        return DEFAULT_LOADER.load(path, doc_id=doc_id, max_bytes=max_bytes)
