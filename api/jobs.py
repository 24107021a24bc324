"""Background ingestion for the HTTP API: uploads become jobs that one worker thread runs in turn.

Queries keep being answered while a job runs: the job writes a new index version beside the
live one and the server switches to it in one step when the job commits (the store's snapshot).

Uploaded files are kept under ``<index>/uploads/<sha256>/<name>`` (content-addressed, so a queued
job's file is never overwritten by a later upload of the same name) and indexed as the document
``uploads/<name>``: uploading a file of the same name again updates that document. A stored copy
is kept only while something needs it: the copy its document was indexed from, and copies that a
queued or running job has yet to read. Every other copy is removed when a job ends, when the
document is deleted, and when the server starts (with any ``.incoming`` leftovers of uploads cut
off mid-body).

Each job is recorded in ``<index>/jobs/<id>.json`` (replaced atomically at every change of
status), so job ids survive a restart with their outcome; the last ``server.keep_jobs`` finished
jobs are kept. A job that was queued or running when the server stopped is reported ``failed``
with ``STOPPED_ERROR`` at the next start and its files are removed: it is not re-run, because the
client that uploaded may already have given up, and re-running old work unasked at start-up
would surprise an operator restarting a server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.public_ids import UPLOAD_PREFIX
from api.schemas import UploadedFile
from ingest.loaders import file_fingerprint
from ingest.pipeline import FileSpec, ingest
from rag.config import Settings
from rag.errors import RagError
from rag.fsutil import atomic_write_text
from rag.index import layout
from rag.index.manifest import utc_now
from rag.protocols import Embedder, VectorStore

log = logging.getLogger("rag.api.jobs")

__all__ = ["UPLOAD_PREFIX", "JobManager", "UploadedFile"]

JOBS_DIR = "jobs"  # under the index directory: one <job id>.json per job
INCOMING = ".incoming"  # under uploads/: request bodies being received
STOPPED_ERROR = "the server stopped before the job finished; upload again"


def upload_doc_id(name: str) -> str:
    return UPLOAD_PREFIX + name


def uploads_dir(index_dir: Path) -> Path:
    return Path(index_dir) / layout.UPLOADS


def stored_files(index_dir: Path) -> list[Path]:
    """Every stored upload, ``uploads/<sha256>/<name>`` (``.incoming`` excluded)."""
    root = uploads_dir(index_dir)
    if not root.is_dir():
        return []
    return [f for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") for f in d.iterdir()]


@dataclass
class Job:
    id: str
    files: list[UploadedFile]
    metadata: dict[str, dict[str, Any]]  # by file name; not recorded on disk (jobs are not re-run)
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
    owner: str = ""  # the key id (or client address) that submitted it; for per-key limits only

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
            "files": [f.model_dump() for f in self.files],
            "summary": self.summary,
            "errors": list(self.errors),
            "error": self.error,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], index_dir: Path) -> Job:
        """A job as ``public()`` wrote it; each file's path follows from its hash and name."""
        files = [
            UploadedFile.model_validate({**f, "path": uploads_dir(index_dir) / f["sha256"] / f["name"]})
            for f in record["files"]
        ]
        fields = {k: v for k, v in record.items() if k not in ("files", "progress", "owner")}
        return cls(files=files, metadata={}, progress=record.get("progress") or {}, **fields)


class JobStore:
    """Job records in ``<index>/jobs/<id>.json``, each replaced atomically (tmp, fsync, rename)."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)
        self.dir = self.index_dir / JOBS_DIR
        self._lock = threading.Lock()  # one save or remove at a time: a late save cannot undo a remove

    def save(self, job: Job) -> None:
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.dir / f"{job.id}.json", json.dumps(job.public()))

    def remove(self, job_id: str) -> None:
        with self._lock:
            (self.dir / f"{job_id}.json").unlink(missing_ok=True)

    def load(self) -> list[Job]:
        """Every recorded job, oldest first; unreadable records (and temp files a crash left
        behind) are removed with a warning."""
        if not self.dir.is_dir():
            return []
        jobs: list[Job] = []
        for path in self.dir.iterdir():
            if path.suffix != ".json":
                path.unlink(missing_ok=True)
                continue
            try:
                jobs.append(Job.from_record(json.loads(path.read_text(encoding="utf-8")), self.index_dir))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("removing unreadable job record %s (%s)", path, exc)
                path.unlink(missing_ok=True)
        return sorted(jobs, key=lambda j: j.created_at)


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
    borrowed", and a second copy of MiniLM costs ~90 MB. Several managers (one per collection)
    may share that embedder: then they share ``run_lock`` too, so one job runs at a time.
    """

    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        make_embedder: Callable[[], Embedder],
        *,
        run_lock: threading.Lock | None = None,
    ) -> None:
        self.settings = settings
        self._run_lock = run_lock or threading.Lock()
        self.store = store  # the server's: jobs write through it, and refresh it on commit
        self._make_embedder = make_embedder
        self._embedder: Embedder | None = None
        self._store = JobStore(settings.index_dir)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        # Held while an upload moves files into uploads/ and submits them, and while stored files
        # are tidied: otherwise a tidy could remove a file between its arrival and its job.
        self.files_lock = threading.RLock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._recover()
        self._thread = threading.Thread(target=self._run, name="ingest-jobs", daemon=True)
        self._thread.start()

    def submit(self, files: list[UploadedFile], metadata: dict[str, dict[str, Any]], owner: str = "") -> Job:
        job = Job(id=uuid.uuid4().hex, files=files, metadata=metadata, owner=owner)
        self._store.save(job)
        with self._lock:
            self._jobs[job.id] = job
        self._forget_old()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def unfinished(self, owner: str) -> int:
        """Queued or running jobs submitted by ``owner``."""
        with self._lock:
            return sum(1 for job in self._jobs.values() if job.owner == owner and not job.finished)

    @property
    def busy(self) -> bool:
        """A job is queued or running."""
        with self._lock:
            return any(not job.finished for job in self._jobs.values())

    def recent(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def pending_paths(self) -> set[Path]:
        """Stored files that a queued or running job has yet to read (or is reading)."""
        with self._lock:
            return {f.path for job in self._jobs.values() if not job.finished for f in job.files}

    def tidy_uploads(self, names: Iterable[str] | None = None) -> None:
        """Remove the stored uploads that nothing needs (of ``names``, or all of them).

        Kept: the copy each indexed upload was built from (found by its raw-bytes fingerprint;
        if none matches, e.g. after a parser upgrade, the newest copy) and every copy a queued or
        running job has yet to read. Everything else goes, with its emptied folder.
        """
        wanted = None if names is None else set(names)
        with self.files_lock:
            pending = self.pending_paths()
            indexed = self._indexed_fingerprints()
            by_name: dict[str, list[Path]] = {}
            for path in stored_files(self.settings.index_dir):
                if wanted is None or path.name in wanted:
                    by_name.setdefault(path.name, []).append(path)
            for name, copies in by_name.items():
                doc_id = upload_doc_id(name)
                keep = pending | (_indexed_copy(copies, indexed[doc_id]) if doc_id in indexed else set())
                for path in copies:
                    if path not in keep:
                        _remove_stored(path)

    def close(self, timeout_s: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)

    # -- start-up ------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Load the recorded jobs, fail the ones the last server left unfinished, and remove
        the stored files no document or job refers to."""
        for job in self._store.load():
            if not job.finished:
                job.status, job.error, job.stage = "failed", STOPPED_ERROR, None
                job.finished_at = utc_now()
                self._store.save(job)
            self._jobs[job.id] = job
        self._forget_old()
        shutil.rmtree(uploads_dir(self.settings.index_dir) / INCOMING, ignore_errors=True)
        self.tidy_uploads()

    def _forget_old(self) -> None:
        """Keep the newest ``server.keep_jobs`` finished jobs (unfinished ones always stay)."""
        keep = self.settings.server.keep_jobs
        with self._lock:
            finished = [j.id for j in self._jobs.values() if j.finished]
            old = finished[: max(0, len(finished) - keep)]
            for job_id in old:
                del self._jobs[job_id]
        for job_id in old:
            self._store.remove(job_id)

    def _indexed_fingerprints(self) -> dict[str, str | None]:
        try:
            return self.store.snapshot().file_hashes(UPLOAD_PREFIX)
        except RagError:  # no index yet (or an unreadable one): nothing is indexed
            return {}

    # -- the worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._run_lock:  # stays "queued" while another collection's job runs
                self._run_one(job)

    def _run_one(self, job: Job) -> None:
        job.status, job.started_at = "running", utc_now()
        self._store.save(job)
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
            self.store.refresh()
            self._store.save(job)
            self._tidy_after(job)
            self._forget_old()

    def _tidy_after(self, job: Job) -> None:
        try:
            self.tidy_uploads(f.name for f in job.files)
        except OSError:
            log.exception("tidying the uploads of job %s failed", job.id)

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
            store=self.store,
        )
        job.summary = {k: v for k, v in summary.to_dict().items() if k != "errors"}
        job.errors = summary.errors
        if summary.documents and summary.failed == summary.documents:
            job.status, job.error = "failed", "no file could be indexed; see errors"
        else:
            job.status = "succeeded"


def _indexed_copy(copies: list[Path], fingerprint: str | None) -> set[Path]:
    """Of an indexed upload's stored copies, the one its document was built from."""
    matching = {p for p in copies if fingerprint is not None and file_fingerprint(p) == fingerprint}
    return matching or {max(copies, key=lambda p: p.stat().st_mtime)}


def _remove_stored(path: Path) -> None:
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: the same content uploaded under another name
        path.parent.rmdir()
