"""The collections one server holds open: each with its own store, pipeline, answer cache and
upload jobs, built on first use and closed again, least recently used first, beyond
``collections.max_loaded``.

What is shared is what carries no collection's content: the embedder, the generator and its
judge (one model in memory, whatever the number of collections), and the generation gate. What is
not shared is everything that does: each collection's store (vectors, chunks, document ids), its
answer cache (an answer cached for one collection can never be served to another, even for the
same question at the same version number) and its jobs (a job id is looked up in its own
collection only). Isolation is by construction: a request reaches one Collection object and
nothing in it points at another.

Upload jobs of all collections run one at a time (one lock) on one shared ingest embedder:
ingestion is CPU-bound, and a second embedder per collection would cost memory for nothing.
A collection with unfinished jobs is never closed, so its jobs always finish and stay visible.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from api.jobs import JobManager
from rag import collections
from rag.collections import DEFAULT_COLLECTION
from rag.components import Components, build_components
from rag.config import Settings
from rag.errors import RagError
from rag.pipeline import Pipeline
from rag.protocols import Embedder, VectorStore

log = logging.getLogger("rag.api.collections")


class CollectionNotFoundError(RagError, LookupError):
    """A read of a collection that has no directory (answered 404)."""


@dataclass
class Collection:
    """One loaded collection: everything a request about it needs."""

    name: str
    settings: Settings  # index_dir is this collection's directory
    components: Components
    pipeline: Pipeline
    jobs: JobManager

    @property
    def store(self) -> VectorStore:
        return self.components.store


class Collections:
    """Loads collections on demand and keeps at most ``collections.max_loaded`` of them open."""

    def __init__(
        self, settings: Settings, components: Components, make_ingest_embedder: Callable[[], Embedder]
    ) -> None:
        self.settings = settings
        self._shared = components  # the default collection's, and the source of the shared parts
        self._make_ingest_embedder = make_ingest_embedder
        self._ingest_embedder: Embedder | None = None
        self._ingest_lock = threading.Lock()  # one upload job at a time, whatever its collection
        self._embedder_lock = threading.Lock()
        self._loaded: OrderedDict[str, Collection] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, name: str, *, create: bool = False) -> Collection:
        """The loaded collection ``name``, opening it if needed. A collection other than the
        default one must exist unless ``create`` (an upload's first write makes its directory)."""
        collections.check_name(name)
        with self._lock:
            found = self._loaded.get(name)
            if found is not None:
                self._loaded.move_to_end(name)
                return found
            if not collections.exists(self.settings, name):
                if not create:
                    raise CollectionNotFoundError(
                        f"no collection {name!r}; a collection is created by its first upload "
                        f"(POST /v1/collections/{name}/documents) or `rag ingest PATH --collection {name}`"
                    )
                collections.collection_dir(self.settings, name).mkdir(parents=True, exist_ok=True)
            loaded = self._open(name)
            self._loaded[name] = loaded
            self._evict(keep=name)
            return loaded

    def loaded(self) -> list[Collection]:
        with self._lock:
            return list(self._loaded.values())

    def default(self) -> Collection:
        return self.get(DEFAULT_COLLECTION)

    def set_components(self, components: Components) -> None:
        """Components with a (newly loaded) generator: every open pipeline answers with it, and
        every collection opened later is built with it."""
        with self._lock:
            self._shared = components
            for c in self._loaded.values():
                c.components = _with_shared(c.components, components)
                c.pipeline.generator = components.generator
                c.pipeline.judge = components.judge

    def forget_if_empty(self, name: str) -> None:
        """Remove collection ``name`` again when it holds nothing: no committed index and no job.
        An upload that creates a collection and then fails (a bad body, a refused name) must not
        leave an empty collection behind."""
        with self._lock:
            found = self._loaded.get(name)
            if name == DEFAULT_COLLECTION or found is None or found.jobs.recent():
                return
            if collections.has_index(self.settings, name):
                return
            found.jobs.close()
            del self._loaded[name]
            shutil.rmtree(collections.collection_dir(self.settings, name), ignore_errors=True)

    def unfinished_jobs(self, owner: str) -> int:
        """Queued or running upload jobs of ``owner`` (a key id or a client address), in every
        collection: collections with unfinished jobs are never closed, so none is missed."""
        return sum(c.jobs.unfinished(owner) for c in self.loaded())

    def close(self) -> None:
        with self._lock:
            for c in self._loaded.values():
                c.jobs.close()
            self._loaded.clear()

    # -- internals -----------------------------------------------------------------------------
    def _open(self, name: str) -> Collection:
        settings = collections.settings_for(self.settings, name)
        if name == DEFAULT_COLLECTION:
            components = self._shared  # as given to create_app (a test's, an embedding app's)
        else:
            s = self._shared
            components = build_components(settings, embedder=s.embedder, judge=s.judge, generator=s.generator)
        jobs = JobManager(settings, components.store, self._ingest_embedder_once, run_lock=self._ingest_lock)
        log.info("collection %s opened", name)
        return Collection(name, settings, components, components.pipeline(), jobs)

    def _evict(self, keep: str) -> None:
        """Close the least recently used collections beyond the bound, skipping busy ones and
        ``keep`` (the one just opened)."""
        excess = len(self._loaded) - self.settings.collections.max_loaded
        for name in list(self._loaded):
            if excess <= 0:
                return
            c = self._loaded[name]
            if name == keep or c.jobs.busy:
                continue
            c.jobs.close()
            del self._loaded[name]
            excess -= 1
            log.info(
                "collection %s closed (collections.max_loaded=%d)", name, self.settings.collections.max_loaded
            )

    def _ingest_embedder_once(self) -> Embedder:
        with self._embedder_lock:
            if self._ingest_embedder is None:
                self._ingest_embedder = self._make_ingest_embedder()
            return self._ingest_embedder


def _with_shared(own: Components, shared: Components) -> Components:
    """A collection's components (its store, retriever, cache) with the shared generator and judge."""
    return replace(own, generator=shared.generator, judge=shared.judge)
