"""Background ingestion for the HTTP API: uploads become jobs that one worker thread runs in turn.

Queries keep being answered while a job runs: the job writes a new index version beside the
live one and the server switches to it in one step when the job commits (``IndexHandle``).

Uploaded files are kept under ``<index>/uploads/<sha256>/<name>`` (content-addressed, so a queued
job's file is never overwritten by a later upload of the same name) and indexed as the document
``uploads/<name>``: uploading a file of the same name again updates that document. Once a newer
upload of a name is indexed, the older copies are removed; deleting the document removes its files.

Jobs live in memory (the last ``KEEP_JOBS``); after a restart their ids are unknown. An upload
whose job never ran (the server stopped first) stays on disk; upload it again to index it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.pipeline import FileSpec, ingest
from rag.config import Settings
from rag.errors import RagError
from rag.index import layout
from rag.index.handle import IndexHandle
from rag.index.manifest import utc_now
from rag.protocols import Embedder

log = logging.getLogger("rag.api.jobs")

KEEP_JOBS = 200
UPLOAD_PREFIX = "uploads/"  # document ids (and sources) of uploaded files


def upload_doc_id(name: str) -> str:
    return UPLOAD_PREFIX + name


def uploads_dir(index_dir: Path) -> Path:
    return Path(index_dir) / layout.UPLOADS


def stored_copies(index_dir: Path, name: str) -> list[Path]:
    """Every stored copy of upload ``name`` (one per distinct content)."""
    root = uploads_dir(index_dir)
    if not root.is_dir():
        return []
    return [d / name for d in root.iterdir() if not d.name.startswith(".") and (d / name).is_file()]


def remove_uploads(index_dir: Path, name: str, keep: Path | None = None) -> None:
    """Delete stored copies of upload ``name`` (all but ``keep``) and their emptied folders."""
    for path in stored_copies(index_dir, name):
        if keep is not None and path == keep:
            continue
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: same content uploaded under another name
            path.parent.rmdir()


@dataclass
class UploadedFile:
    name: str
    path: Path  # where it is stored under <index>/uploads
    bytes: int
    sha256: str

    @property
    def document_id(self) -> str:
        return upload_doc_id(self.name)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "document_id": self.document_id,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


@dataclass
class Job:
    id: str
    files: list[UploadedFile]
    metadata: dict[str, dict[str, Any]]  # by file name
    kind: str = "ingest"
    status: str = "queued"  # queued -> running -> succeeded | failed
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    stage: str | None = None
    progress: dict[str, dict[str, int]] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "stage": self.stage,
            "progress": {k: dict(v) for k, v in self.progress.items()},
            "files": [f.public() for f in self.files],
            "summary": self.summary,
            "errors": list(self.errors),
            "error": self.error,
        }


class _JobProgress:
    """The ingest pipeline's ProgressSink, recorded on the job for GET /v1/jobs/{id}."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def start(self, stage: str, total: int) -> None:
        self.job.progress.setdefault(stage, {"done": 0, "total": 0})["total"] = total

    def advance(self, stage: str, n: int = 1) -> None:
        self.job.progress[stage]["done"] += n
        self.job.stage = stage  # the stage that last made progress


class JobManager:
    """Runs ingestion jobs one at a time on a background thread.

    Jobs embed with their own embedder instance, loaded on the first job: a Hugging Face fast
    tokenizer shared between the job thread and request threads can fail with "Already
    borrowed", and a second copy of MiniLM costs ~90 MB.
    """

    def __init__(
        self, settings: Settings, handle: IndexHandle, make_embedder: Callable[[], Embedder]
    ) -> None:
        self.settings = settings
        self.handle = handle
        self._make_embedder = make_embedder
        self._embedder: Embedder | None = None
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ingest-jobs", daemon=True)
        self._thread.start()

    def submit(self, files: list[UploadedFile], metadata: dict[str, dict[str, Any]]) -> Job:
        job = Job(id=uuid.uuid4().hex, files=files, metadata=metadata)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                oldest = next(iter(self._jobs))
                if not self._jobs[oldest].finished:
                    break
                del self._jobs[oldest]
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def pending_names(self, exclude: str | None = None) -> set[str]:
        """Upload names that a queued or running job (other than ``exclude``) has yet to read."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if not j.finished and j.id != exclude]
        return {f.name for job in jobs for f in job.files}

    def close(self, timeout_s: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)

    # -- the worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.status, job.started_at = "running", utc_now()
            try:
                self._execute(job)
            except RagError as exc:  # the index is locked, built with another model, ...
                job.status, job.error = "failed", str(exc)
            except Exception as exc:
                log.exception("ingest job %s failed", job.id)
                job.status = "failed"
                job.error = f"internal error ({type(exc).__name__}: {exc}); see the server log"
            finally:
                job.finished_at = utc_now()
                job.stage = None
                self.handle.refresh()

    def _execute(self, job: Job) -> None:
        if self._embedder is None:
            job.stage = "load embedder"
            self._embedder = self._make_embedder()
        summary = ingest(
            [f.path for f in job.files],
            self.settings,
            self._embedder,
            metadata={f.path.as_posix(): job.metadata[f.name] for f in job.files if f.name in job.metadata},
            specs={f.path.as_posix(): FileSpec(f.document_id) for f in job.files},
            progress=_JobProgress(job),
        )
        job.summary = {k: v for k, v in summary.to_dict().items() if k != "errors"}
        job.errors = summary.errors
        self.handle.refresh()
        self._tidy_uploads(job, failed={e["path"] for e in summary.errors})
        if summary.documents and summary.failed == summary.documents:
            job.status, job.error = "failed", "no file could be indexed; see errors"
        else:
            job.status = "succeeded"

    def _tidy_uploads(self, job: Job, failed: set[str]) -> None:
        """Keep one stored copy per indexed upload: the one its document was built from."""
        busy = self.pending_names(exclude=job.id)
        for f in job.files:
            if f.name in busy:
                continue
            if f.document_id not in failed:
                remove_uploads(self.settings.index_dir, f.name, keep=f.path)
                continue
            others = [p for p in stored_copies(self.settings.index_dir, f.name) if p != f.path]
            if others or self._indexed(f.document_id) is None:
                remove_uploads(self.settings.index_dir, f.name, keep=others[0] if others else None)

    def _indexed(self, doc_id: str) -> dict[str, Any] | None:
        try:
            return self.handle.get().document(doc_id)
        except RagError:
            return None
