"""Distributed ingestion: files parsed, chunked and embedded by Ray actors (cluster.address).

``ingest.pipeline.ingest`` comes here when ``cluster.address`` is set (``rag ingest --ray ADDRESS``,
or a server configured with one for its upload jobs). The driver, this process, does what the
local path does before and after parsing, with the same functions: it scans the paths, decides
which files changed against the index (``changed_files``: unchanged ones are skipped unread),
counts each parsed file's outcome (``accept``: a failure, text unchanged, added or updated),
writes every document through the one StoreWriter in file order and commits once (``finish``).
Only parsing, chunking and embedding move to the cluster, where they cost: each of
``cluster.workers`` actors loads the embedder once, then takes ``cluster.files_per_task`` files
at a time and returns their documents, chunks and vectors (or each file's error).

So the incremental semantics are the local path's, and the outcome does not depend on which
worker finishes first: chunk ids are given in file order, as locally. A chunk whose text is
already in the index (or earlier in this run) keeps that vector, as locally.

Failures: a file that cannot be parsed is reported and the rest indexed (parsing runs in the
actor's own time-limited parse worker, ingest.pipeline.ParseWorker). An actor that dies (its
process killed, its node lost) is restarted by Ray and its unfinished tasks re-run, up to
``cluster.max_retries`` times; a task that still fails is re-run one file at a time, so only the
file that kills its worker fails. Nothing reaches the index until the driver's one commit, so a
dying worker can never leave it half-written.

Workers read files by path: on a cluster of several machines the files (and, for upload jobs,
the index directory's ``uploads/``) must be on storage every node mounts at the same path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from ingest.loaders import DEFAULT_LOADER, scan_files
from ingest.pipeline import (
    FileSpec,
    IngestSummary,
    NullProgress,
    ParsePool,
    PendingFile,
    ProgressSink,
    accept,
    changed_files,
    finish,
    open_writer,
    record_unreadable,
)
from rag.cluster import connect
from rag.config import ChunkingSettings, EmbeddingSettings, Settings
from rag.errors import ClusterError, LoaderError
from rag.protocols import Embedder, Loader
from rag.types import Chunk, Document

if TYPE_CHECKING:
    from rag.protocols import StoreWriter, VectorStore

STARTUP_TIMEOUT_S = 300.0  # for every actor to load its embedder (a first ONNX export takes ~1 min)
TASKS_AHEAD_PER_WORKER = 2  # tasks in flight per actor: one running, one queued behind it


def ingest_on_ray(
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
    """``ingest.pipeline.ingest`` (the same arguments and summary) with parsing and embedding on
    the Ray cluster at ``settings.cluster.address``. ``embedder`` only names the index's model
    and dimension here (a lazy one is never loaded); the workers load their own copy."""
    if not settings.cluster.address:
        raise ClusterError("ingest_on_ray() needs cluster.address (the Ray cluster to use)")
    started = time.perf_counter()
    progress = progress or NullProgress()
    summary = IngestSummary()
    scan = scan_files(paths, settings.ingest.extensions)
    record_unreadable(scan, summary)
    specs = specs or {}
    with open_writer(settings, embedder, store) as writer:
        progress.start("parse", len(scan.files))
        queue = changed_files(scan, writer, settings, metadata or {}, specs, summary, progress)
        if queue:  # a no-op re-ingest starts no actor
            with WorkerPool(settings, loader, embedder) as pool:
                summary.workers = len(pool.actors)
                for item, result in pool.results(queue):
                    progress.advance("parse")
                    doc = accept(item, result.outcome(), writer, summary)
                    if doc is not None:
                        _write(writer, doc, result, summary, progress)
        finish(writer, scan, specs, sync, summary)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _write(
    writer: StoreWriter, doc: Document, result: FileResult, summary: IngestSummary, progress: ProgressSink
) -> None:
    """Write one document; a chunk text the index (or this run) already has keeps that vector,
    so the result is the local path's, which embeds such a text once. Chunks are cut before the
    driver names the document (an upload's ``uploads/<name>``): they take its source here."""
    chunks = [replace(c, source=doc.source) for c in result.chunks]
    stored = writer.vectors_for_hashes({c.hash for c in chunks})
    vectors = result.vectors if result.vectors is not None else np.zeros((0, 0), np.float32)
    if stored:
        vectors = np.stack([stored.get(c.hash, v) for c, v in zip(chunks, vectors, strict=True)])
    summary.chunks_embedded += len({c.hash for c in chunks} - stored.keys())
    progress.start("write", summary.chunks + len(chunks))
    writer.upsert(doc, chunks, vectors)
    summary.chunks += len(chunks)
    progress.advance("write", len(chunks))


# --------------------------------------------------------------------------- the worker side


@dataclass(frozen=True)
class WorkerConfig:
    """What an actor needs, and no more: settings hold secrets (API keys), which stay here."""

    embedding: EmbeddingSettings
    chunking: ChunkingSettings
    file_timeout_s: float
    max_bytes: int
    loader: Loader


@dataclass
class FileResult:
    """One file as a worker returns it: its document, chunks and their vectors, or its error."""

    document: Document | None = None
    chunks: list[Chunk] = field(default_factory=list)
    vectors: np.ndarray | None = None  # one row per chunk
    error: str | None = None  # a LoaderError's message, naming the path

    def outcome(self) -> Document | LoaderError:
        return self.document if self.document is not None else LoaderError(self.error or "no result")


class IngestWorker:
    """The body of one Ray actor (wrapped with ``ray.remote`` by :class:`WorkerPool`, so this
    module imports without Ray): the embedder, chunker and parse worker, loaded once."""

    def __init__(self, config: WorkerConfig) -> None:
        from ingest.chunking import Chunker
        from rag.embedding import make_embedder

        embedding = config.embedding
        if embedding.threads == 0:  # as many inference threads as CPUs Ray gave this actor
            embedding = embedding.model_copy(update={"threads": _assigned_cpus()})
        self.embedder = make_embedder(embedding)
        self.chunker = Chunker(config.chunking, self.embedder.count_tokens, self.embedder.max_tokens)
        self.parser = ParsePool(1, config.file_timeout_s, config.loader)
        self.max_bytes = config.max_bytes

    def ready(self) -> tuple[int, str, int]:
        """(pid, model id, dimension), once the model is loaded."""
        return os.getpid(), self.embedder.model_id, self.embedder.dim

    def process(self, files: list[tuple[str, str]]) -> list[FileResult]:
        """Parse, chunk and embed (absolute path, document id) pairs; one result per file."""
        jobs = [(Path(path), {"doc_id": doc_id, "max_bytes": self.max_bytes}) for path, doc_id in files]
        results = [
            FileResult(error=str(parsed))
            if isinstance(parsed, LoaderError)
            else FileResult(parsed, self.chunker.split(parsed))
            for parsed in self.parser.parse(jobs)
        ]
        self._embed(results)
        return results

    def _embed(self, results: list[FileResult]) -> None:
        """Each distinct text of the task once, in one call (the embedder batches by length)."""
        texts = {c.hash: c.text for r in results for c in r.chunks}
        found = dict(zip(texts, self.embedder.embed_documents(list(texts.values())), strict=True))
        for r in results:
            if r.document is not None:
                r.vectors = np.zeros((len(r.chunks), self.embedder.dim), dtype=np.float32)
                for i, chunk in enumerate(r.chunks):
                    r.vectors[i] = found[chunk.hash]


def _assigned_cpus() -> int:
    """The CPUs Ray gave this actor (1 outside Ray: asking there would start a local Ray)."""
    import ray

    if not ray.is_initialized():
        return 1
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, round(cpus))


# --------------------------------------------------------------------------- the driver side


class WorkerPool:
    """``cluster.workers`` IngestWorker actors spread over the cluster's nodes; ``results()``
    yields each file's result in the order given, whichever actor finishes first."""

    def __init__(self, settings: Settings, loader: Loader, embedder: Embedder) -> None:
        self.ray: ModuleType = connect(str(settings.cluster.address))
        cluster = settings.cluster
        self.files_per_task = cluster.files_per_task
        self.max_retries = cluster.max_retries
        config = WorkerConfig(
            embedding=settings.embedding,
            chunking=settings.chunking,
            file_timeout_s=settings.ingest.file_timeout_s,
            max_bytes=int(settings.ingest.max_file_mb * 1024 * 1024),
            loader=loader,
        )
        actor = self.ray.remote(IngestWorker).options(
            num_cpus=cluster.worker_cpus,
            max_restarts=cluster.max_retries,
            max_task_retries=cluster.max_retries,
            scheduling_strategy="SPREAD",
        )
        self.actors = [actor.remote(config) for _ in range(cluster.workers)]
        self.pids = self._started(embedder, cluster.workers * cluster.worker_cpus)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)

    def _started(self, embedder: Embedder, cpus: float) -> list[int]:
        """Wait for every actor's model; their identity must be the index's."""
        try:
            ready = self.ray.get([a.ready.remote() for a in self.actors], timeout=STARTUP_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            self.close()
            have = self.ray.cluster_resources().get("CPU", 0)
            raise ClusterError(
                f"{len(self.actors)} ingest workers did not start within {STARTUP_TIMEOUT_S:g} s; they "
                f"need {cpus:g} CPUs and the cluster has {have:g}: lower cluster.workers or "
                "cluster.worker_cpus, or add nodes"
            ) from None
        except self.ray.exceptions.RayError as exc:
            self.close()
            raise ClusterError(f"the ingest workers could not load the embedder: {_reason(exc)}") from exc
        for _, model_id, dim in ready:
            if (model_id, dim) != (embedder.model_id, embedder.dim):
                self.close()
                raise ClusterError(
                    f"a Ray worker loaded embedding model {model_id!r} (dimension {dim}) but this "
                    f"index needs {embedder.model_id!r} ({embedder.dim}); install the same model and "
                    "rag-service version on every node"
                )
        return [pid for pid, _, _ in ready]

    def results(self, queue: list[PendingFile]) -> Iterator[tuple[PendingFile, FileResult]]:
        """Tasks of ``files_per_task`` files, at most ``TASKS_AHEAD_PER_WORKER`` per actor in flight
        (to the least busy actor), results taken in file order: memory stays bounded by the tasks
        in flight whatever the corpus size."""
        step = self.files_per_task
        batches = [queue[i : i + step] for i in range(0, len(queue), step)]
        window = TASKS_AHEAD_PER_WORKER * len(self.actors)
        inflight: dict[Any, tuple[int, int]] = {}  # ref -> (batch, actor)
        load = [0] * len(self.actors)
        done: dict[int, list[FileResult]] = {}
        submitted = 0
        for want in range(len(batches)):
            while want not in done:
                while submitted < len(batches) and submitted < want + window:
                    a = load.index(min(load))
                    ref = self.actors[a].process.remote(_payload(batches[submitted]))
                    inflight[ref] = (submitted, a)
                    load[a] += 1
                    submitted += 1
                (ref,), _ = self.ray.wait(list(inflight), num_returns=1)
                index, a = inflight.pop(ref)
                load[a] -= 1
                done[index] = self._collect(ref, batches[index])
            yield from zip(batches[want], done.pop(want), strict=True)

    def _collect(self, ref: Any, batch: list[PendingFile]) -> list[FileResult]:
        """A task's results; one that failed after Ray's retries is re-run a file at a time, so a
        file that kills its worker fails alone."""
        try:
            results: list[FileResult] = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            if len(batch) > 1:
                return [r for item in batch for r in self._collect(self._submit_one(item), [item])]
            return [FileResult(error=self._failure(batch[0], exc))]
        for item, result in zip(batch, results, strict=True):
            if result.error is not None:  # name the file as given, not its absolute path
                result.error = result.error.replace(_absolute(item.path), item.path.as_posix())
        return results

    def _submit_one(self, item: PendingFile) -> Any:
        return self.actors[0].process.remote(_payload([item]))

    def _failure(self, item: PendingFile, exc: Exception) -> str:
        if isinstance(exc, self.ray.exceptions.RayActorError):
            return (
                f"{item.path.as_posix()}: the Ray worker processing it died {self.max_retries + 1} times "
                f"({_reason(exc)}); the file may exhaust a worker's memory"
            )
        return f"{item.path.as_posix()}: the ingest worker failed on it ({_reason(exc)})"


def _payload(batch: list[PendingFile]) -> list[tuple[str, str]]:
    """Absolute paths (a worker's working directory is not ours) and document ids."""
    return [(_absolute(item.path), item.doc_id) for item in batch]


def _absolute(path: Path) -> str:
    return Path(os.path.abspath(path)).as_posix()


def _reason(exc: BaseException) -> str:
    """The first line of a Ray error, which otherwise carries a whole remote traceback."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
