"""Ingestion: files -> documents -> chunks -> vectors -> one atomic index commit.

Incremental by design: a document is identified by a stable id (its normalised absolute path,
or an id the caller chooses, e.g. ``uploads/<name>`` for HTTP uploads) and versioned by the hash
of its text. A document whose text and metadata are unchanged is skipped; a changed one has its
old chunks replaced; a chunk whose exact text is already in the index (or earlier in this batch)
reuses its vector; and one bad file is recorded in the summary without stopping the batch.

Each file is parsed in a worker process with a time limit (``ingest.file_timeout_s``), so a file
that sends a parser into a loop is killed and reported instead of hanging the batch;
``ingest.parse_workers`` files are parsed at a time, and results are taken in file order, so the
outcome does not depend on which worker finishes first.

Re-ingest at scale: a file whose size and modification time (``file_stat``) are those recorded
when it was last hashed is skipped without reading it; nothing is parsed, chunked or embedded
unless some file changed, so with a lazily loaded embedder (rag.embedding.make_lazy_embedder) a
no-op re-ingest never loads the model.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ingest.loaders import (
    DEFAULT_LOADER,
    FileScan,
    default_document_id,
    file_fingerprint,
    file_stat,
    scan_files,
)
from rag.config import Settings
from rag.errors import LoaderError
from rag.metadata import MetadataError, MetadataLimits, check_metadata
from rag.protocols import Embedder, Loader
from rag.types import Chunk, Document

if TYPE_CHECKING:  # imported where used: the parse worker imports this module, keep that light
    from ingest.chunking import Chunker
    from rag.protocols import DocumentState, StoreWriter, VectorStore

TIMEOUT_HINT = "ingest.file_timeout_s (env RAG_INGEST__FILE_TIMEOUT_S)"
PROGRESS_BATCHES = 4  # embedder batches per progress update when a flush is large
# Embedding starts once this many batches' worth of new texts are pending, taking the longest
# first: parsing then overlaps embedding, while the short leftovers wait for more short ones
# (simulated on the sample corpus: 4 % more padded word pieces than one global sort, 15 % fewer
# than sorting each batch of 32 alone).
EARLY_BATCHES = 8
# Imported once by the forkserver, so every parse worker forked from it has them loaded (the
# loaders import them lazily: a no-op `rag ingest` never pays for them).
PARSER_MODULES = ("bs4", "lxml", "pypdf")
LOOKAHEAD_PER_WORKER = 4  # parsed documents held ahead of the one being chunked, per worker
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
    workers: int = 0  # Ray workers that parsed and embedded (ingest.distributed); 0: this process did
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
    worker). With ``cluster.address`` set, files are parsed and embedded on that Ray cluster
    (ingest.distributed), with the same outcome.
    """
    if settings.cluster.address:
        from ingest.distributed import ingest_on_ray

        return ingest_on_ray(
            paths,
            settings,
            embedder,
            sync=sync,
            metadata=metadata,
            specs=specs,
            progress=progress,
            loader=loader,
            store=store,
        )
    started = time.perf_counter()
    progress = progress or NullProgress()
    summary = IngestSummary()
    scan = scan_files(paths, settings.ingest.extensions)
    record_unreadable(scan, summary)
    specs = specs or {}
    # Parse workers start only if some file needs parsing, and the chunker (which asks the
    # embedder for token counts, loading a lazy embedder's model) only when a document arrives:
    # a no-op re-ingest pays for neither.
    with (
        ParsePool(settings.ingest.parse_workers, settings.ingest.file_timeout_s, loader) as parser,
        open_writer(settings, embedder, store) as writer,
    ):
        batcher = _Batcher(writer, embedder, summary, progress, settings.ingest.embed_window)
        chunker: Chunker | None = None
        parse = _parse(scan, writer, parser, settings, metadata or {}, specs, summary, progress, embedder)
        for doc in parse:
            chunker = chunker or _chunker(settings, embedder)
            batcher.add(doc, chunker.split(doc))
        parser.close()
        batcher.flush()
        finish(writer, scan, specs, sync, summary)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def finish(
    writer: StoreWriter, scan: FileScan, specs: Mapping[str, FileSpec], sync: bool, summary: IngestSummary
) -> None:
    """The end of every ingest, local or distributed: with ``sync``, delete documents whose files
    are gone; then the one commit (none when nothing changed)."""
    if sync:
        seen = {_doc_id(f, specs, scan.resolved) for f in scan.files}
        summary.deleted = _delete_missing(writer, scan, seen)
    if writer.changed:
        summary.index_version = writer.commit().version


def _chunker(settings: Settings, embedder: Embedder) -> Chunker:
    from ingest.chunking import Chunker

    return Chunker(settings.chunking, embedder.count_tokens, embedder.max_tokens)


def record_unreadable(scan: FileScan, summary: IngestSummary) -> None:
    """Folders that could not be listed are failures the user must see, like a bad file."""
    for path, error in scan.unreadable:
        summary.documents += 1
        summary.failed += 1
        summary.errors.append({"path": path.as_posix(), "error": str(error)})


def open_writer(settings: Settings, embedder: Embedder, store: VectorStore | None) -> StoreWriter:
    """A writer of ``store``, or of the store ``index.store`` names (a server passes its own, so
    its snapshot sees the commit at once)."""
    if store is None:  # rag.components would also import the query side: not needed here
        from rag import registry

        store = registry.build("store", settings.index.store, settings, setting="index.store")
    return store.writer(embedder)


def _doc_id(path: Path, specs: Mapping[str, FileSpec], resolved: Mapping[Path, Path] | None = None) -> str:
    """The spec's id, else the resolved path (from the scan when it already resolved it)."""
    spec = specs.get(path.as_posix())
    if spec:
        return spec.doc_id
    real = resolved.get(path) if resolved else None
    return real.as_posix() if real is not None else default_document_id(path)


@dataclass
class PendingFile:
    """A file that ingestion looked at: who it is in the index and what the index holds for it."""

    path: Path
    doc_id: str
    shown: str  # the name users see in citations and errors
    metadata: dict[str, Any] | None  # given for this run; None keeps what is indexed
    file_hash: str | None
    known: DocumentState | None  # what the index holds for doc_id
    file_stat: str | None = None  # size:mtime when it was hashed (ingest.loaders.file_stat)


def _parse(
    scan: FileScan,
    writer: StoreWriter,
    parser: ParsePool,
    settings: Settings,
    metadata: Mapping[str, dict[str, Any]],
    specs: Mapping[str, FileSpec],
    summary: IngestSummary,
    progress: ProgressSink,
    embedder: Embedder,
) -> Iterator[Document]:
    """Yield the documents that are new or changed, parsed ahead of the caller by the pool.

    A file whose stat (or, when the stat changed, whose bytes) and metadata match what is indexed
    is skipped unparsed; a file whose bytes changed but whose text did not is recorded as
    unchanged (with its new fingerprint and stat).
    """
    max_bytes = int(settings.ingest.max_file_mb * 1024 * 1024)
    progress.start("parse", len(scan.files))
    queue = changed_files(scan, writer, settings, metadata, specs, summary, progress)
    if queue:  # a lazy embedder's model loads while the parse workers start and parse
        with contextlib.suppress(AttributeError):
            embedder.load_in_background()  # type: ignore[attr-defined]
    jobs = [(item.path, {"doc_id": item.doc_id, "max_bytes": max_bytes}) for item in queue]
    for item, result in zip(queue, parser.parse(jobs), strict=True):
        progress.advance("parse")
        doc = accept(item, result, writer, summary)
        if doc is not None:
            yield doc


def accept(
    item: PendingFile, result: Document | LoaderError, writer: StoreWriter, summary: IngestSummary
) -> Document | None:
    """A parsed file's outcome, counted: None for a failure or a file whose text and metadata are
    what is indexed (its new fingerprint recorded), else the document to write. Shared by the
    local and the distributed (ingest.distributed) paths, so both decide alike."""
    if isinstance(result, LoaderError):
        summary.failed += 1
        # Messages name the path parsed; an upload's is a storage path, so show its name.
        shown = str(result).replace(item.path.as_posix(), item.shown)
        summary.errors.append({"path": item.shown, "error": shown})
        return None
    doc = result
    doc.source, doc.file_hash, doc.file_stat = item.shown, item.file_hash, item.file_stat
    known = item.known
    doc.metadata = item.metadata if item.metadata is not None else (known.metadata if known else {})
    if known and (known.hash, known.metadata) == (doc.hash, doc.metadata):
        summary.unchanged += 1
        writer.set_file_hash(doc.id, doc.file_hash, doc.file_stat)
        return None
    summary.added += known is None
    summary.updated += known is not None
    return doc


def changed_files(
    scan: FileScan,
    writer: StoreWriter,
    settings: Settings,
    metadata: Mapping[str, dict[str, Any]],
    specs: Mapping[str, FileSpec],
    summary: IngestSummary,
    progress: ProgressSink,
) -> list[PendingFile]:
    """The files that must be parsed; the others are counted (unchanged, or failed metadata)."""
    max_bytes = int(settings.ingest.max_file_mb * 1024 * 1024)
    limits = MetadataLimits.from_settings(settings.server)
    queue: list[PendingFile] = []
    for path in scan.files:
        summary.documents += 1
        spec = specs.get(path.as_posix())
        doc_id = _doc_id(path, specs, scan.resolved)
        item = PendingFile(
            path=path,
            doc_id=doc_id,
            shown=(spec.source or spec.doc_id) if spec else path.as_posix(),
            metadata=metadata.get(path.as_posix(), metadata.get(doc_id)),
            file_hash=None,
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
        if _unchanged(item, max_bytes, writer):
            summary.unchanged += 1
            progress.advance("parse")
        else:
            queue.append(item)
    return queue


def _unchanged(item: PendingFile, max_bytes: int, writer: StoreWriter) -> bool:
    """Whether the indexed document is this file, as it is now, with this metadata.

    The stat is taken before the bytes are hashed, so a file changed while being hashed gets an
    older stat recorded and is hashed again next time. A matching stat skips hashing; a changed
    stat with the same bytes (a touched file) records the new stat without re-embedding anything.
    """
    known = item.known
    metadata_same = known is not None and item.metadata in (None, known.metadata)
    item.file_stat = file_stat(item.path)
    if metadata_same and known and known.file_hash and item.file_stat and known.file_stat == item.file_stat:
        item.file_hash = known.file_hash
        return True
    item.file_hash = file_fingerprint(item.path, max_bytes)
    if not (metadata_same and known and item.file_hash and known.file_hash == item.file_hash):
        return False
    writer.set_file_hash(item.doc_id, item.file_hash, item.file_stat)
    return True


class _Batcher:
    """Embeds each distinct chunk text once, in batches of similar length that span documents,
    and writes documents (in file order) as soon as their vectors are known.

    Texts already in the index (or earlier in this run) reuse their vectors. Once
    ``EARLY_BATCHES`` batches' worth of texts are pending, the longest batch is embedded (so the
    embedder runs while the parse workers read the next files, and a batch pads to about its own
    length); when the documents waiting for vectors hold ``window`` chunks, everything pending
    is embedded, longest first, and written. Memory stays bounded by the window, whatever the
    corpus size; which texts share a batch depends only on the files, never on timing.
    """

    def __init__(
        self,
        writer: StoreWriter,
        embedder: Embedder,
        summary: IngestSummary,
        progress: ProgressSink,
        window: int,
    ) -> None:
        self.writer, self.embedder, self.summary, self.progress = writer, embedder, summary, progress
        self.batch = max(1, int(getattr(embedder, "batch_size", 32)))
        self.window = max(1, window)
        self.early = min(self.window, EARLY_BATCHES * self.batch)
        self.vectors: dict[str, np.ndarray] = {}  # chunk hash -> vector, for documents not yet written
        self.needed: Counter[str] = Counter()  # chunk hash -> waiting documents' chunks with it
        self.todo: dict[str, str] = {}  # chunk hash -> text, waiting for the embedder
        self.lengths: dict[str, int] = {}  # chunk hash -> word pieces, to batch similar lengths
        self.waiting: deque[tuple[Document, list[Chunk]]] = deque()  # in file order
        self.held = 0  # chunks of the waiting documents
        self.planned = 0  # chunks to write so far (the write stage's total)

    def add(self, doc: Document, chunks: list[Chunk]) -> None:
        new = {c.hash: c.text for c in chunks if c.hash not in self.needed and c.hash not in self.todo}
        self.vectors.update(self.writer.vectors_for_hashes(set(new)))
        for h, text in new.items():
            if h not in self.vectors:
                self.todo[h] = text
                self.lengths[h] = self.embedder.count_tokens(text)
        self.needed.update(c.hash for c in chunks)
        self.planned += len(chunks)
        self.progress.start("embed", self.summary.chunks_embedded + len(self.todo))
        self.progress.start("write", self.planned)
        self.waiting.append((doc, chunks))
        self.held += len(chunks)
        if self.held >= self.window:
            self.flush()
            return
        while len(self.todo) >= self.early:
            self._embed(self._longest()[: self.batch])
        self._write_ready()

    def flush(self) -> None:
        """Embed everything pending, longest first, then write every waiting document."""
        hashes = self._longest()
        step = PROGRESS_BATCHES * self.batch  # a live progress bar for a big flush, cheaply
        for lo in range(0, len(hashes), step):
            self._embed(hashes[lo : lo + step])
        self._write_ready()

    def _longest(self) -> list[str]:
        """Pending texts, longest first (ties in arrival order: deterministic)."""
        return sorted(self.todo, key=self.lengths.__getitem__, reverse=True)

    def _embed(self, hashes: list[str]) -> None:
        vectors = self.embedder.embed_documents([self.todo[h] for h in hashes])
        for h, vec in zip(hashes, vectors, strict=True):
            self.vectors[h] = vec
            del self.todo[h], self.lengths[h]
        self.summary.chunks_embedded += len(hashes)
        self.progress.advance("embed", len(hashes))

    def _write_ready(self) -> None:
        """Write waiting documents, in file order, up to the first still missing a vector."""
        dim = self.embedder.dim
        while self.waiting:
            doc, chunks = self.waiting[0]
            if any(c.hash not in self.vectors for c in chunks):
                return
            self.waiting.popleft()
            vecs = np.zeros((0, dim), np.float32)
            if chunks:
                vecs = np.stack([self.vectors[c.hash] for c in chunks])
            self.writer.upsert(doc, chunks, vecs)
            self._release(chunks)
            self.summary.chunks += len(chunks)
            self.progress.advance("write", len(chunks))

    def _release(self, chunks: list[Chunk]) -> None:
        """Forget vectors no waiting document needs; the writer finds written ones again."""
        self.held -= len(chunks)
        for c in chunks:
            self.needed[c.hash] -= 1
            if self.needed[c.hash] <= 0:
                del self.needed[c.hash]
                self.vectors.pop(c.hash, None)


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

    def ready(self) -> bool:
        """Whether ``result()`` would return at once: the file is parsed, failed to start, is past
        its deadline (result() then reports the timeout) or is parsed in-process."""
        task = self._task
        if task is None or task.error is not None or self.timeout_s <= 0 or self._conn is None:
            return True
        return self._conn.poll(0) or time.monotonic() >= task.deadline

    @property
    def waitable(self) -> tuple[Connection, float] | None:
        """The connection the submitted file's result arrives on and its deadline; None when
        there is nothing to wait for (see ``ready``)."""
        task = self._task
        if task is None or task.error is not None or self.timeout_s <= 0 or self._conn is None:
            return None
        return self._conn, task.deadline

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


ParseJob = tuple[Path, dict[str, Any]]  # a file and the loader's keyword arguments


class ParsePool:
    """Several :class:`ParseWorker` processes; ``parse(jobs)`` yields each file's Document or
    LoaderError in the order given, whichever worker finishes first.

    Each worker has one file at a time with its own time limit; up to
    ``LOOKAHEAD_PER_WORKER`` parsed documents per worker are held ahead of the caller, so the
    workers keep parsing while the caller chunks and embeds. Workers start only when there is a
    file for them. With ``timeout_s == 0`` files are parsed in this process, one at a time.
    """

    def __init__(self, workers: int, timeout_s: float, loader: Loader = DEFAULT_LOADER) -> None:
        count = 1 if timeout_s <= 0 else max(1, workers)
        self.workers = [ParseWorker(timeout_s, loader) for _ in range(count)]

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def parse(self, jobs: Sequence[ParseJob]) -> Iterator[Document | LoaderError]:
        ahead = len(self.workers) * LOOKAHEAD_PER_WORKER
        idle = list(reversed(self.workers[: max(1, min(len(self.workers), len(jobs)))]))
        busy: dict[int, tuple[ParseWorker, int]] = {}  # id(worker) -> (worker, job index)
        done: dict[int, Document | LoaderError] = {}
        submitted = 0
        for want in range(len(jobs)):
            while True:
                while idle and submitted < len(jobs) and submitted <= want + ahead:
                    worker = idle.pop()
                    worker.submit(jobs[submitted][0], **jobs[submitted][1])
                    busy[id(worker)] = (worker, submitted)
                    submitted += 1
                if want in done:
                    break
                for worker in _wait_ready([w for w, _ in busy.values()]):
                    _, index = busy.pop(id(worker))
                    done[index] = _collect(worker)
                    idle.append(worker)
            yield done.pop(want)


def _wait_ready(workers: list[ParseWorker]) -> list[ParseWorker]:
    """Block until at least one worker's result is ready (or past its deadline); those workers."""
    while True:
        ready = [w for w in workers if w.ready()]
        if ready:
            return ready
        pending = [w.waitable for w in workers if w.waitable is not None]
        if not pending:
            return workers
        timeout = max(0.0, min(deadline for _, deadline in pending) - time.monotonic())
        wait([conn for conn, _ in pending], timeout=timeout)


def _collect(worker: ParseWorker) -> Document | LoaderError:
    try:
        return worker.result()
    except LoaderError as exc:
        return exc


def _context() -> multiprocessing.context.BaseContext:
    """forkserver: children fork from a clean single-threaded process with the loaders imported
    (forking the server or torch's threads directly is unsafe; spawning re-imports every time)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", "ingest.pipeline", *PARSER_MODULES])
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
