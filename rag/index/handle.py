"""A long-lived handle that always serves the latest committed index version.

The server keeps one; after a commit (by its own upload job or a CLI ingest in another process)
the next query re-opens the new version. A reader already in use keeps its version to the end.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rag.errors import IndexNotFoundError
from rag.index.reader import IndexReader


class IndexHandle:
    def __init__(self, root: Path, check_interval_s: float = 1.0) -> None:
        self.root = Path(root)
        self._interval = check_interval_s
        self._reader: IndexReader | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def get(self) -> IndexReader:
        """The current reader; raises IndexNotFoundError while no index has been committed."""
        with self._lock:
            now = time.monotonic()
            if self._reader is None or (now - self._checked >= self._interval and self._reader.is_stale()):
                self._reader = IndexReader.open(self.root)
            self._checked = now
            return self._reader

    def available(self) -> bool:
        try:
            self.get()
        except IndexNotFoundError:
            return False
        return True
