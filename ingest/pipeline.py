"""Ingestion: files -> documents -> chunks -> vectors -> one atomic index commit.

Incremental by design: a document is identified by a stable id (its normalised absolute path,
or an id the caller chooses, e.g. ``uploads/<name>`` for HTTP uploads) and versioned by the hash
of its text. A document whose text and metadata are unchanged is skipped; a changed one has its
old chunks replaced; a chunk whose exact text is already in the index (or earlier in this batch)
reuses its vector; and one bad file is recorded in the summary without stopping the batch.

Each file is parsed in a worker process with a time limit (``ingest.file_timeout_s``), so a file
that sends a parser into a loop is killed and reported instead of hanging the batch.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ingest.loaders import default_document_id, iter_files, load_document
from rag.config import Settings
from rag.errors import LoaderError
from rag.protocols import Embedder
from rag.types import Chunk, Document

if TYPE_CHECKING:  # imported where used: the parse worker imports this module, keep that light
    from rag.chunking import Chunker
    from rag.index.writer import IndexWriter

STAGES = ("parse", "embed", "write")
TIMEOUT_HINT = "ingest.file_timeout_s (env RAG_INGEST__FILE_TIMEOUT_S)"
STARTUP_TIMEOUT_S = 120.0  # for the parse worker to start; not counted against any file

Loader = Callable[..., Document]  # load_document's signature: (path, *, doc_id, max_bytes)


class ProgressSink(Protocol):
    """Receives progress per stage; the CLI renders it with rich, the API stores it on the job."""

    def start(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, n: int = 1) -> None: ...


class NullProgress:
    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, n: int = 1) -> None:
        pass


@dataclass(frozen=True)
class FileSpec:
    """How one file is named in the index when its path is not the name users should see.

    HTTP uploads are stored under ``<index>/uploads/<sha256>/<name>``; their spec is
    ``FileSpec("uploads/<name>")`` so re-uploading a file of the same name updates one document.
    """

    doc_id: str
    source: str | None = None  # shown in citations; defaults to doc_id


@dataclass
class IngestSummary:
    documents: int = 0  # files seen
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    chunks: int = 0  # chunks written for added/updated documents
    chunks_embedded: int = 0  # of those, how many needed the embedder (the rest reused a vector)
    seconds: float = 0.0
    index_version: int | None = None  # the version committed by this run; None if nothing changed
    errors: list[dict[str, str]] = field(default_factory=list)  # {"path", "error"} per failed file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]
    status: str  # "added" | "updated"


def ingest(
    paths: Sequence[Path],
    settings: Settings,
    embedder: Embedder,
    *,
    sync: bool = False,
    metadata: Mapping[str, dict[str, Any]] | None = None,
    specs: Mapping[str, FileSpec] | None = None,
    progress: ProgressSink | None = None,
    loader: Loader = load_document,
) -> IngestSummary:
    """Index ``paths`` (files or folders) into ``settings.index_dir``; see the module docstring.

    ``metadata`` maps a file's path (as given, POSIX) or its document id to user metadata; a file
    with no entry keeps the metadata it was indexed with. ``specs`` maps a path to its
    :class:`FileSpec`. ``sync`` deletes documents under the given folders whose files are gone.
    ``loader`` must be a module-level function (it is sent to the parse worker by name).
    """
    from rag.chunking import Chunker

    started = time.perf_counter()
    progress = progress or NullProgress()
    summary = IngestSummary()
    chunker = Chunker(settings.chunking, embedder.count_tokens, embedder.max_tokens)
    files = list(iter_files(paths, settings.ingest.extensions))
    specs = specs or {}
    # The parse worker boots while the writer takes the lock and stages its copy of the index.
    with (
        ParseWorker(settings.ingest.file_timeout_s, loader, start=bool(files)) as parser,
        _writer(settings, embedder) as writer,
    ):
        pending = _parse(files, writer, chunker, parser, settings, metadata or {}, specs, summary, progress)
        parser.close()
        vectors = _embed(pending, writer, embedder, summary, progress)
        progress.start("write", len(pending))
        for item, vecs in zip(pending, vectors, strict=True):
            writer.upsert(item.doc, item.chunks, vecs)
            setattr(summary, item.status, getattr(summary, item.status) + 1)
            summary.chunks += len(item.chunks)
            progress.advance("write")
        if sync:
            seen = {_doc_id(f, specs) for f in files}
            summary.deleted = _delete_missing(writer, paths, seen)
        if writer.changed:
            summary.index_version = writer.commit().version
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _writer(settings: Settings, embedder: Embedder) -> IndexWriter:
    from rag.index.writer import IndexWriter

    return IndexWriter(
        settings.index_dir,
        embedding_model=embedder.model_id,
        dimension=embedder.dim,
        chunk_tokens=settings.chunking.chunk_tokens,
        overlap_tokens=settings.chunking.overlap_tokens,
        lock_timeout_s=settings.ingest.lock_timeout_s,
    )


def _doc_id(path: Path, specs: Mapping[str, FileSpec]) -> str:
    spec = specs.get(path.as_posix())
    return spec.doc_id if spec else default_document_id(path)


def _parse(
    files: list[Path],
    writer: IndexWriter,
    chunker: Chunker,
    parser: ParseWorker,
    settings: Settings,
    metadata: Mapping[str, dict[str, Any]],
    specs: Mapping[str, FileSpec],
    summary: IngestSummary,
    progress: ProgressSink,
) -> list[_Pending]:
    max_bytes = int(settings.ingest.max_file_mb * 1024 * 1024)
    progress.start("parse", len(files))
    pending = []
    for path in files:
        summary.documents += 1
        spec = specs.get(path.as_posix())
        shown = (spec.source or spec.doc_id) if spec else path.as_posix()
        try:
            doc = parser.load(path, doc_id=spec.doc_id if spec else None, max_bytes=max_bytes)
        except LoaderError as exc:
            summary.failed += 1
            # Messages name the path parsed; an upload's is a storage path, so show its name.
            summary.errors.append({"path": shown, "error": str(exc).replace(path.as_posix(), shown)})
            progress.advance("parse")
            continue
        doc.source = shown
        known = writer.document_state(doc.id)
        given = metadata.get(path.as_posix(), metadata.get(doc.id))
        doc.metadata = given if given is not None else (known[1] if known else {})
        if known == (doc.hash, doc.metadata):
            summary.unchanged += 1
        else:
            pending.append(_Pending(doc, chunker.split(doc), "updated" if known else "added"))
        progress.advance("parse")
    return pending


def _embed(
    pending: list[_Pending],
    writer: IndexWriter,
    embedder: Embedder,
    summary: IngestSummary,
    progress: ProgressSink,
) -> list[np.ndarray]:
    """Embed each distinct chunk text once; reuse vectors already stored in the index."""
    hashes = {c.hash: c.text for item in pending for c in item.chunks}
    known = writer.vectors_for_hashes(set(hashes))
    todo = [h for h in hashes if h not in known]
    progress.start("embed", len(todo))
    batch = max(1, embedder_batch(embedder))
    for i in range(0, len(todo), batch):
        part = todo[i : i + batch]
        for digest, vec in zip(part, embedder.embed_documents([hashes[h] for h in part]), strict=True):
            known[digest] = vec
        progress.advance("embed", len(part))
    summary.chunks_embedded = len(todo)
    dim = embedder.dim
    return [
        np.stack([known[c.hash] for c in item.chunks]) if item.chunks else np.zeros((0, dim), np.float32)
        for item in pending
    ]


def embedder_batch(embedder: Embedder) -> int:
    """Progress granularity: a few model batches per update keeps the bar live and cheap."""
    return 4 * int(getattr(embedder, "batch_size", 32))


def _delete_missing(writer: IndexWriter, roots: Iterable[Path], seen: set[str]) -> int:
    """With --sync, documents under the given folders whose files are gone are deleted."""
    prefixes = [Path(r).resolve().as_posix().rstrip("/") + "/" for r in roots if Path(r).is_dir()]
    gone = [
        doc_id
        for doc_id in writer.document_ids()
        if doc_id not in seen and any(doc_id.startswith(p) for p in prefixes)
    ]
    for doc_id in gone:
        writer.delete(doc_id)
    return len(gone)


# --------------------------------------------------------------------------- parsing with a limit


class ParseWorker:
    """Runs the loader in a child process, one file at a time, and kills it after ``timeout_s``.

    The child is forked from a multiprocessing forkserver that has already imported this module,
    so after the server's one-off start (about a second) a worker starts in milliseconds; it is
    reused for every file until one times out or crashes it, and each file costs one round trip
    (well under a millisecond plus pickling the text). With ``timeout_s == 0`` files are parsed
    in this process with no limit. As with any multiprocessing code, a script that calls
    ``ingest()`` at import time must guard it with ``if __name__ == "__main__":``.
    """

    def __init__(self, timeout_s: float, loader: Loader = load_document, *, start: bool = False) -> None:
        self.timeout_s = timeout_s
        self.loader = loader
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._booting = False
        if start and timeout_s > 0:
            self._start(wait=False)

    def __enter__(self) -> ParseWorker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def load(self, path: Path, **kwargs: Any) -> Document:
        """Like the loader; a timeout or a crashed parser becomes a LoaderError for this file."""
        if self.timeout_s <= 0:
            return self.loader(path, **kwargs)
        try:
            conn = self._start()
        except LoaderError as exc:
            raise LoaderError(f"{path.as_posix()}: {exc}") from None
        conn.send((path, kwargs))
        if not conn.poll(self.timeout_s):
            self._kill()
            raise LoaderError(
                f"{path.as_posix()}: parsing took longer than {self.timeout_s:g} s and was stopped; "
                f"the file may be malformed or very large. Raise {TIMEOUT_HINT} to allow more time."
            )
        try:
            kind, value = conn.recv()
        except (EOFError, OSError):
            code = self._kill()
            raise LoaderError(
                f"{path.as_posix()}: the parser crashed on this file (worker exit code {code}); "
                "the file is probably malformed, re-export or repair it."
            ) from None
        if kind == "ok":
            return value
        raise LoaderError(value)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):  # the worker is already gone
                self._conn.send(None)
        if self._proc is not None:
            self._proc.join(timeout=2)
        self._kill()

    def _start(self, wait: bool = True) -> Connection:
        """Start the worker if needed; with ``wait``, until it says it is ready."""
        if self._conn is None:
            ctx = _context()
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, self.loader), name="rag-parse", daemon=True)
            proc.start()
            child.close()
            self._proc, self._conn, self._booting = proc, parent, True
        if wait and self._booting:
            # Start-up (forking, importing the loader's module) is not parse time: wait it out
            # with its own, generous limit before the per-file clock starts.
            conn = self._conn
            ready = conn.poll(STARTUP_TIMEOUT_S)
            try:
                ready = ready and conn.recv() == "ready"
            except (EOFError, OSError):
                ready = False
            if not ready:
                code = self._kill()
                raise LoaderError(
                    f"the parse worker did not start (exit code {code}); when ingest() is called from "
                    "a script, guard its entry point with `if __name__ == '__main__':` (a rule of "
                    "Python multiprocessing), or set ingest.file_timeout_s to 0 to parse in-process"
                )
            self._booting = False
        assert self._conn is not None
        return self._conn

    def _kill(self) -> int | None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join()
        return proc.exitcode


def _context() -> multiprocessing.context.BaseContext:
    """forkserver: children fork from a clean single-threaded process with the loaders imported
    (forking the server or torch's threads directly is unsafe; spawning re-imports every time)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", "ingest.pipeline"])
    return ctx


def _serve(conn: Connection, loader: Loader) -> None:
    """The worker's loop: "ready", then (path, kwargs) in, ("ok", Document) or ("error", msg) out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if task is None:
            return
        path, kwargs = task
        try:
            result: tuple[str, Any] = ("ok", loader(path, **kwargs))
        except LoaderError as exc:
            result = ("error", str(exc))
        except Exception as exc:  # a loader bug: report it against this file, keep serving
            result = ("error", f"{Path(path).as_posix()}: parser failed ({type(exc).__name__}: {exc})")
        conn.send(result)
