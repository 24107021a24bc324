"""A long-lived handle that always serves the latest committed index version.

The server keeps one. After a commit by its own upload job the job calls ``refresh()`` so the
next query sees the new version at once; a commit by another process (a CLI ingest) is noticed
within ``check_interval_s``. A reader already in use keeps its version until its query ends, so
every response comes wholly from one version.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rag.errors import IndexNotFoundError
from rag.index.reader import IndexReader


class IndexHandle:
    def __init__(
        self, root: Path, check_interval_s: float = 1.0, reader_options: dict[str, object] | None = None
    ) -> None:
        self.root = Path(root)
        self._options = reader_options or {}
        self._interval = check_interval_s
        self._reader: IndexReader | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def get(self) -> IndexReader:
        """The current reader; raises IndexNotFoundError while no index has been committed."""
        with self._lock:
            now = time.monotonic()
            if self._reader is None:
                self._reader = IndexReader.open(self.root, **self._options)
                self._checked = now
            elif now - self._checked >= self._interval:
                # Checked at most once per interval, however busy the server (reading CURRENT is
                # a syscall per check, not per query).
                self._checked = now
                if self._reader.is_stale():
                    self._reader = IndexReader.open(self.root, **self._options)
            return self._reader

    def refresh(self) -> None:
        """Check CURRENT on the next ``get()`` instead of waiting for the interval."""
        with self._lock:
            self._checked = float("-inf")

    def available(self) -> bool:
        try:
            self.get()
        except IndexNotFoundError:
            return False
        return True
