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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ingest.loaders import DEFAULT_LOADER, FileScan, default_document_id, file_fingerprint, scan_files
from rag.config import Settings
from rag.errors import LoaderError
from rag.metadata import MetadataError, MetadataLimits, check_metadata
from rag.protocols import Embedder, Loader
from rag.types import Chunk, Document

if TYPE_CHECKING:  # imported where used: the parse worker imports this module, keep that light
    from rag.protocols import DocumentState, StoreWriter, VectorStore

TIMEOUT_HINT = "ingest.file_timeout_s (env RAG_INGEST__FILE_TIMEOUT_S)"
PROGRESS_BATCHES = 4  # embedder batches per progress update when a flush is large
STARTUP_TIMEOUT_S = 120.0  # for the parse worker to start; not counted against any file


class ProgressSink(Protocol):
    """Receives progress per stage; the CLI renders it with rich, the API stores it on the job.

    Stages run interleaved (documents stream through parse, embed and write), so ``start`` is
    called again whenever a stage's known total grows; a sink keeps the count done so far.
    """

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
    documents: int = 0  # files seen, plus folders that could not be listed (see errors)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    chunks: int = 0  # chunks written for added/updated documents
    chunks_embedded: int = 0  # of those, how many needed the embedder (the rest reused a vector)
    seconds: float = 0.0
    index_version: int | None = None  # the version committed by this run; None if nothing changed
    # {"path", "error"} per failed file, and per folder that could not be listed (those count in
    # `documents` and `failed` too: one entry per path the user has to fix)
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest(
    paths: Sequence[Path],
    settings: Settings,
    embedder: Embedder,
    *,
    sync: bool = False,
    metadata: Mapping[str, dict[str, Any]] | None = None,
    specs: Mapping[str, FileSpec] | None = None,
    progress: ProgressSink | None = None,
    loader: Loader = DEFAULT_LOADER,
    store: VectorStore | None = None,
) -> IngestSummary:
    """Index ``paths`` (files or folders) into ``settings.index_dir``; see the module docstring.

    ``metadata`` maps a file's path (as given, POSIX) or its document id to user metadata; a file
    with no entry keeps the metadata it was indexed with. ``specs`` maps a path to its
    :class:`FileSpec`. ``sync`` deletes documents under the given folders whose files are gone
    (never under a folder that could not be listed: its files are not gone, only unreadable).
    ``loader`` must be picklable, an instance of a module-level class (it is sent to the parse
    worker).
    """
    from ingest.chunking import Chunker

    started = time.perf_counter()
    progress = progress or NullProgress()
    summary = IngestSummary()
    chunker = Chunker(settings.chunking, embedder.count_tokens, embedder.max_tokens)
    scan = scan_files(paths, settings.ingest.extensions)
    files = scan.files
    _record_unreadable(scan, summary)
    specs = specs or {}
    # The parse worker starts only if some file needs parsing: a no-op re-ingest never pays for it.
    with (
        ParseWorker(settings.ingest.file_timeout_s, loader) as parser,
        _writer(settings, embedder, store) as writer,
    ):
        batcher = _Batcher(writer, embedder, summary, progress)
        for doc in _parse(files, writer, parser, settings, metadata or {}, specs, summary, progress):
            batcher.add(doc, chunker.split(doc))
        parser.close()
        batcher.flush()
        if sync:
            seen = {_doc_id(f, specs) for f in files}
            summary.deleted = _delete_missing(writer, scan, seen)
        if writer.changed:
            summary.index_version = writer.commit().version
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _record_unreadable(scan: FileScan, summary: IngestSummary) -> None:
    """Folders that could not be listed are failures the user must see, like a bad file."""
    for path, error in scan.unreadable:
        summary.documents += 1
        summary.failed += 1
        summary.errors.append({"path": path.as_posix(), "error": str(error)})


def _writer(settings: Settings, embedder: Embedder, store: VectorStore | None) -> StoreWriter:
    """A writer of ``store``, or of the store ``index.store`` names (a server passes its own, so
    its snapshot sees the commit at once)."""
    from rag.components import build_store

    return (store or build_store(settings)).writer(embedder)


def _doc_id(path: Path, specs: Mapping[str, FileSpec]) -> str:
    spec = specs.get(path.as_posix())
    return spec.doc_id if spec else default_document_id(path)


@dataclass
class _File:
    path: Path
    doc_id: str
    shown: str  # the name users see in citations and errors
    metadata: dict[str, Any] | None  # given for this run; None keeps what is indexed
    file_hash: str | None
    known: DocumentState | None  # what the index holds for doc_id


def _parse(
    files: list[Path],
    writer: StoreWriter,
    parser: ParseWorker,
    settings: Settings,
    metadata: Mapping[str, dict[str, Any]],
    specs: Mapping[str, FileSpec],
    summary: IngestSummary,
    progress: ProgressSink,
) -> Iterator[Document]:
    """Yield the documents that are new or changed, parsed one file ahead of the caller.

    A file whose bytes (fingerprint) and metadata match what is indexed is skipped unparsed; a file
    whose bytes changed but whose text did not is recorded as unchanged (with its new fingerprint).
    """
    max_bytes = int(settings.ingest.max_file_mb * 1024 * 1024)
    progress.start("parse", len(files))
    limits = MetadataLimits.from_settings(settings.server)
    queue: list[_File] = []
    for path in files:
        summary.documents += 1
        spec = specs.get(path.as_posix())
        doc_id = _doc_id(path, specs)
        item = _File(
            path=path,
            doc_id=doc_id,
            shown=(spec.source or spec.doc_id) if spec else path.as_posix(),
            metadata=metadata.get(path.as_posix(), metadata.get(doc_id)),
            file_hash=file_fingerprint(path, max_bytes),
            known=writer.document_state(doc_id),
        )
        if item.metadata is not None:
            try:  # bounded here, where metadata enters the index, whichever edge it came from
                check_metadata(item.metadata, limits, owner=item.shown)
            except MetadataError as exc:
                summary.failed += 1
                summary.errors.append({"path": item.shown, "error": str(exc)})
                progress.advance("parse")
                continue
        known = item.known
        if (
            known
            and item.file_hash
            and known.file_hash == item.file_hash
            and item.metadata in (None, known.metadata)
        ):
            summary.unchanged += 1
            progress.advance("parse")
        else:
            queue.append(item)

    def submit(item: _File) -> None:
        parser.submit(item.path, doc_id=item.doc_id, max_bytes=max_bytes)

    if queue:
        submit(queue[0])
    for i, item in enumerate(queue):
        try:
            doc = parser.result()
        except LoaderError as exc:
            summary.failed += 1
            # Messages name the path parsed; an upload's is a storage path, so show its name.
            summary.errors.append(
                {"path": item.shown, "error": str(exc).replace(item.path.as_posix(), item.shown)}
            )
            doc = None
        if i + 1 < len(queue):
            submit(queue[i + 1])  # parsed by the worker while the caller chunks and embeds this one
        progress.advance("parse")
        if doc is None:
            continue
        doc.source, doc.file_hash = item.shown, item.file_hash
        known = item.known
        doc.metadata = item.metadata if item.metadata is not None else (known.metadata if known else {})
        if known and (known.hash, known.metadata) == (doc.hash, doc.metadata):
            summary.unchanged += 1
            writer.set_file_hash(doc.id, doc.file_hash)
        else:
            summary.added += known is None
            summary.updated += known is not None
            yield doc


class _Batcher:
    """Embeds each distinct chunk text once, in batches that span documents, and writes each
    document as soon as its vectors are known.

    Texts already in the index (or earlier in this run) reuse their vectors. Batches are flushed
    as soon as they fill, so the embedder runs while the parse worker reads the next file.
    """

    def __init__(
        self, writer: StoreWriter, embedder: Embedder, summary: IngestSummary, progress: ProgressSink
    ) -> None:
        self.writer, self.embedder, self.summary, self.progress = writer, embedder, summary, progress
        self.batch = max(1, int(getattr(embedder, "batch_size", 32)))
        self.vectors: dict[str, np.ndarray] = {}  # chunk hash -> vector, for everything seen so far
        self.todo: dict[str, str] = {}  # chunk hash -> text, waiting for the embedder
        self.waiting: list[tuple[Document, list[Chunk]]] = []  # waiting for some of those vectors
        self.planned = 0  # chunks to write so far (the write stage's total)

    def add(self, doc: Document, chunks: list[Chunk]) -> None:
        new = {c.hash: c.text for c in chunks if c.hash not in self.vectors and c.hash not in self.todo}
        self.vectors.update(self.writer.vectors_for_hashes(set(new)))
        self.todo.update((h, t) for h, t in new.items() if h not in self.vectors)
        self.planned += len(chunks)
        self.progress.start("embed", self.summary.chunks_embedded + len(self.todo))
        self.progress.start("write", self.planned)
        self.waiting.append((doc, chunks))
        if len(self.todo) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Embed everything pending, then write the documents that were waiting for it."""
        hashes = list(self.todo)
        step = PROGRESS_BATCHES * self.batch  # a live progress bar for a big document, cheaply
        for lo in range(0, len(hashes), step):
            part = hashes[lo : lo + step]
            vectors = self.embedder.embed_documents([self.todo[h] for h in part])
            self.vectors.update(zip(part, vectors, strict=True))
            self.summary.chunks_embedded += len(part)
            self.progress.advance("embed", len(part))
        self.todo.clear()
        dim = self.embedder.dim
        for doc, chunks in self.waiting:
            vecs = (
                np.stack([self.vectors[c.hash] for c in chunks]) if chunks else np.zeros((0, dim), np.float32)
            )
            self.writer.upsert(doc, chunks, vecs)
            self.summary.chunks += len(chunks)
            self.progress.advance("write", len(chunks))
        self.waiting.clear()


def _delete_missing(writer: StoreWriter, scan: FileScan, seen: set[str]) -> int:
    """With --sync, documents under the walked folders whose files are gone are deleted; those
    under a folder that could not be listed are kept (their files may well be there)."""
    prefixes = _prefixes(scan.folders)
    kept = _prefixes(path for path, _ in scan.unreadable)
    gone = [
        doc_id
        for doc_id in writer.document_ids()
        if doc_id not in seen
        and any(doc_id.startswith(p) for p in prefixes)
        and not any(doc_id.startswith(k) for k in kept)
    ]
    for doc_id in gone:
        writer.delete(doc_id)
    return len(gone)


def _prefixes(folders: Iterable[Path]) -> list[str]:
    """Document-id prefixes of the files under ``folders`` (ids are resolved POSIX paths)."""
    return [default_document_id(f).rstrip("/") + "/" for f in folders]


# --------------------------------------------------------------------------- parsing with a limit


@dataclass
class _Task:
    """The one file the worker is parsing (or, with no time limit, is about to)."""

    path: Path
    kwargs: dict[str, Any]
    deadline: float = 0.0
    error: LoaderError | None = None  # the worker could not even start


class ParseWorker:
    """Runs the loader in a child process, one file at a time, and kills it after ``timeout_s``.

    The child is forked from a multiprocessing forkserver that has already imported this module,
    so after the server's one-off start (about a second) a worker starts in milliseconds; it is
    reused for every file until one times out or crashes it, and each file costs one round trip
    (well under a millisecond plus pickling the text). With ``timeout_s == 0`` files are parsed
    in this process with no limit. As with any multiprocessing code, a script that calls
    ``ingest()`` at import time must guard it with ``if __name__ == "__main__":``.
    """

    def __init__(self, timeout_s: float, loader: Loader = DEFAULT_LOADER) -> None:
        self.timeout_s = timeout_s
        self.loader = loader
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._booting = False
        self._task: _Task | None = None

    def __enter__(self) -> ParseWorker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def load(self, path: Path, **kwargs: Any) -> Document:
        """Like the loader; a timeout or a crashed parser becomes a LoaderError for this file."""
        self.submit(path, **kwargs)
        return self.result()

    def submit(self, path: Path, **kwargs: Any) -> None:
        """Start parsing ``path`` in the worker and return at once; ``result()`` collects it.

        Ingestion submits the next file before it embeds the current one, so parsing (a second
        core's work) overlaps embedding. The file's time limit runs from here.
        """
        if self._task is not None:
            raise RuntimeError("ParseWorker.submit() called again before result()")
        self._task = _Task(path, kwargs)
        if self.timeout_s <= 0:
            return
        try:
            conn = self._start()
        except LoaderError as exc:
            self._task.error = LoaderError(f"{path.as_posix()}: {exc}")
            return
        self._task.deadline = time.monotonic() + self.timeout_s
        conn.send((path, kwargs))

    def result(self) -> Document:
        """The submitted file's Document, or its LoaderError (timeouts and crashes included)."""
        task, self._task = self._task, None
        if task is None:
            raise RuntimeError("ParseWorker.result() called with nothing submitted")
        path = task.path
        if task.error is not None:
            raise task.error
        if self.timeout_s <= 0:
            kind, value = _run_loader(self.loader, path, task.kwargs)
            if kind == "ok":
                return value
            raise LoaderError(value)
        conn = self._conn
        assert conn is not None
        if not conn.poll(max(0.0, task.deadline - time.monotonic())):
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

    def _start(self) -> Connection:
        """Start the worker if needed and wait until it says it is ready."""
        if self._conn is None:
            ctx = _context()
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, self.loader), name="rag-parse", daemon=True)
            proc.start()
            child.close()
            self._proc, self._conn, self._booting = proc, parent, True
        if self._booting:
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
        conn.send(_run_loader(loader, path, kwargs))


def _run_loader(loader: Loader, path: Path, kwargs: dict[str, Any]) -> tuple[str, Any]:
    """("ok", Document) or ("error", message): in the worker and in-process alike, no exception
    from one file (a loader bug, an OSError it missed) may abort the batch."""
    try:
        return "ok", loader.load(path, **kwargs)
    except LoaderError as exc:
        return "error", str(exc)
    except Exception as exc:  # a loader bug: report it against this file, keep going
        return "error", f"{Path(path).as_posix()}: parser failed ({type(exc).__name__}: {exc})"
