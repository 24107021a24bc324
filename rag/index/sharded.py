"""Sharded search (``index.store: sharded``): several indexes searched as one, over Ray.

For a corpus beyond one machine's memory: ``cluster.shards`` names N ordinary index folders (each
built and updated as any index is, ``rag ingest PART --index SHARD``), and each is served by one
Ray actor that holds its reader (its segments memory-mapped on the node where it runs). A query
is scattered to every shard and gathered here:

* dense: each shard returns its own top-k *after* applying the filters (rag.index.reader), so the
  global top-k, a subset of the union of the shards' top-k, is exact: :func:`merge_top_k` sorts by
  score with the chunk id as the tie-break, as one index merges its segments;
* keyword (BM25): each shard scores with its own statistics (document frequencies, average
  length), so a keyword score is not exactly the one a single index over the same chunks would
  give; the per-shard lists are merged by score all the same;
* hybrid: the retriever (rag.retrieval.hybrid) fuses over the union of the shards' candidates,
  here, with every candidate's cosine exact and its BM25 its own shard's.

Chunk ids are made global (:func:`global_id`): shard ``s`` of ``n`` owns the ids ``local * n + s``,
so an id routes back to its shard with no table, and stays stable while the shard list does.

Consistency: a snapshot pins each shard's current version (the actors keep the readers of the
versions recently pinned), so every call of one request reads the same versions; its
``version`` is their sum, which grows with any shard's commit (what the answer cache keys on).

The actors are named after their shard and detached, so every API replica (a stateless process
with ``cluster.address`` set) finds and shares them instead of loading the shard again. Writes
do not go through this store: ``writer()`` says to ingest into a shard. Ray is imported only
when a snapshot is first asked for; the merge functions here need nothing of it.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import chain
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rag.config import Settings
from rag.errors import ConfigError, IndexMismatchError, RagError
from rag.index.filters import SearchFilter
from rag.index.manifest import Manifest
from rag.protocols import Embedder
from rag.types import ScoredChunk

PINNED_VERSIONS = 4  # readers a shard actor keeps for snapshots still answering
SHARD_CONCURRENCY = 8  # requests one shard actor serves at once (threads; the reader is thread-safe)

# --------------------------------------------------------------------------- pure merge logic


def global_id(local: int, shard: int, shards: int) -> int:
    """The id of shard ``shard``'s chunk ``local`` among ``shards`` shards."""
    return local * shards + shard


def split_id(gid: int, shards: int) -> tuple[int, int]:
    """(shard, local id) of a global id: the inverse of :func:`global_id`."""
    return gid % shards, gid // shards


def globalise(hits: Iterable[ScoredChunk], shard: int, shards: int) -> list[ScoredChunk]:
    """A shard's hits with their chunk ids made global."""
    return [
        replace(h, chunk=replace(h.chunk, id=global_id(int(h.chunk.id or 0), shard, shards))) for h in hits
    ]


def merge_top_k(per_shard: Iterable[Sequence[ScoredChunk]], k: int) -> list[ScoredChunk]:
    """The ``k`` best of the shards' hits (global ids), best first; ties broken by the smaller id,
    so the order never depends on which shard answered first."""
    if k <= 0:
        return []
    return heapq.nsmallest(k, chain.from_iterable(per_shard), key=lambda h: (-h.score, h.chunk.id or 0))


def group_by_shard(ids: Iterable[int], shards: int) -> dict[int, list[int]]:
    """Shard -> the local ids of those of ``ids`` it owns (in the order given)."""
    groups: dict[int, list[int]] = {}
    for gid in ids:
        shard, local = split_id(int(gid), shards)
        groups.setdefault(shard, []).append(local)
    return groups


def merge_documents(
    per_shard: Iterable[Sequence[dict[str, Any]]], limit: int | None, offset: int
) -> list[dict[str, Any]]:
    """One page of the shards' document lists (each sorted by id), by id as one index lists them."""
    merged = list(heapq.merge(*per_shard, key=lambda d: d["id"]))
    return merged[offset:] if limit is None else merged[offset : offset + limit]


def merged_manifest(manifests: Sequence[Manifest], roots: Sequence[Path]) -> Manifest:
    """The shards' manifests as one: their sums, and the embedding identity they must share."""
    first = manifests[0]
    for m, root in zip(manifests, roots, strict=True):
        if (m.embedding_model, m.dimension) != (first.embedding_model, first.dimension):
            raise IndexMismatchError(
                f"shard {root} was built with {m.embedding_model!r} ({m.dimension}) but shard {roots[0]} "
                f"with {first.embedding_model!r} ({first.dimension}); re-index so all shards share one model"
            )
    analyzers = {m.keyword_analyzer for m in manifests}
    return first.model_copy(
        update={
            "version": sum(m.version for m in manifests),
            "documents": sum(m.documents for m in manifests),
            "chunks": sum(m.chunks for m in manifests),
            "created_at": min(m.created_at for m in manifests),
            "updated_at": max(m.updated_at for m in manifests),
            "keyword_analyzer": analyzers.pop() if len(analyzers) == 1 else None,
            "segments": [],
            "tombstones": sum(m.tombstones for m in manifests),
        }
    )


# --------------------------------------------------------------------------- one shard's actor


class ShardServer:
    """The body of one shard's Ray actor (wrapped with ``ray.remote`` by :class:`ShardedStore`):
    the shard's latest version, and the versions recently pinned by snapshots."""

    def __init__(self, root: str, reader_options: dict[str, Any]) -> None:
        from rag.index.handle import IndexHandle

        self.root = Path(root)
        self._handle = IndexHandle(self.root, reader_options=reader_options)
        self._pinned: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def pin(self) -> tuple[int, dict[str, Any], bool]:
        """The latest version: (number, manifest, has keyword terms); kept for later calls."""
        reader = self._handle.get()
        with self._lock:
            self._pinned[reader.version] = reader
            self._pinned.move_to_end(reader.version)
            while len(self._pinned) > PINNED_VERSIONS:
                self._pinned.popitem(last=False)
        return reader.version, reader.manifest.model_dump(), bool(reader.has_keyword_index)

    def refresh(self) -> None:
        self._handle.refresh()

    def call(self, version: int, method: str, *args: Any) -> Any:
        """``method`` of the pinned ``version``'s reader (search, keyword_search, documents, ...)."""
        with self._lock:
            reader = self._pinned.get(version)
        if reader is None:
            from rag.errors import IndexNotFoundError

            raise IndexNotFoundError(
                f"shard {self.root}: version {version} is no longer held (newer versions were pinned "
                "since); retry the request"
            )
        return getattr(reader, method)(*args)


# --------------------------------------------------------------------------- the store and its snapshot


class ShardedSnapshot:
    """One pinned version of every shard, searched as one index (a StoreSnapshot that is also
    KeywordSearchable and VectorReadable, so both retrievers work unchanged)."""

    def __init__(
        self,
        ray: ModuleType,
        actors: list[Any],
        pins: list[tuple[int, dict[str, Any], bool]],
        roots: Sequence[Path],
    ) -> None:
        self._ray = ray
        self._actors = actors
        self._versions = [v for v, _, _ in pins]
        self.manifest = merged_manifest([Manifest.model_validate(m) for _, m, _ in pins], roots)
        self.has_keyword_index = all(k for _, _, k in pins)

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def shards(self) -> int:
        return len(self._actors)

    def search(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[ScoredChunk]:
        q = np.asarray(vector, dtype=np.float32)
        return self._top_k("search", k, q, k, filters)

    def keyword_search(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        return self._top_k("keyword_search", top_k, query, top_k, filters)

    def keyword_scores(self, query: str, chunk_ids: list[int]) -> dict[int, float]:
        return self._by_id("keyword_scores", query, chunk_ids)

    def dense_scores(self, query: np.ndarray, chunk_ids: list[int]) -> dict[int, float]:
        return self._by_id("dense_scores", np.asarray(query, dtype=np.float32), chunk_ids)

    def vectors(self, chunk_ids: list[int]) -> np.ndarray:
        """Each id's stored vector, in the order given."""
        groups = group_by_shard(chunk_ids, self.shards)
        found = self._gather({s: ("vectors", ids) for s, ids in groups.items()})
        rows: dict[int, np.ndarray] = {}
        for shard, block in found.items():
            for local, row in zip(groups[shard], block, strict=True):
                rows[global_id(local, shard, self.shards)] = row
        out = np.zeros((len(chunk_ids), self.manifest.dimension), dtype=np.float32)
        for i, gid in enumerate(chunk_ids):
            out[i] = rows[int(gid)]
        return out

    def documents(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        wanted = None if limit is None else limit + offset  # each shard's first pages suffice
        found = self._gather({s: ("documents", wanted, 0) for s in range(self.shards)})
        return merge_documents([found[s] for s in range(self.shards)], limit, offset)

    def document(self, doc_id: str) -> dict[str, Any] | None:
        found = self._gather({s: ("document", doc_id) for s in range(self.shards)})
        return next((found[s] for s in range(self.shards) if found[s] is not None), None)

    def file_hashes(self, prefix: str = "") -> dict[str, str | None]:
        found = self._gather({s: ("file_hashes", prefix) for s in range(self.shards)})
        return {k: v for s in range(self.shards) for k, v in found[s].items()}

    def check_readable(self) -> None:
        self._gather({s: ("check_readable",) for s in range(self.shards)})

    # -- scatter-gather ------------------------------------------------------------------------
    def _top_k(self, method: str, k: int, *args: Any) -> list[ScoredChunk]:
        found = self._gather({s: (method, *args) for s in range(self.shards)})
        return merge_top_k((globalise(found[s], s, self.shards) for s in range(self.shards)), k)

    def _by_id(self, method: str, query: Any, chunk_ids: list[int]) -> dict[int, float]:
        groups = group_by_shard(chunk_ids, self.shards)
        found = self._gather({s: (method, query, ids) for s, ids in groups.items()})
        return {
            global_id(local, shard, self.shards): score
            for shard, scores in found.items()
            for local, score in scores.items()
        }

    def _gather(self, calls: Mapping[int, tuple[Any, ...]]) -> dict[int, Any]:
        """Call each shard's pinned reader at once and wait for all of them."""
        refs = {s: self._actors[s].call.remote(self._versions[s], *call) for s, call in calls.items()}
        return dict(zip(refs, _get(self._ray, list(refs.values())), strict=True))


class ShardedStore:
    """Registry name ``sharded`` (``index.store``): the ``cluster.shards`` indexes, served by Ray
    actors on the cluster at ``cluster.address``. Cheap to construct: Ray is joined and the actors
    found (or started) on the first ``snapshot()``."""

    def __init__(self, settings: Settings) -> None:
        cluster = settings.cluster
        if not cluster.shards or not cluster.address:
            raise ConfigError(
                "index.store 'sharded' needs cluster.shards (the index folders to search together) and "
                "cluster.address (the Ray cluster that serves them); set both or use index.store 'faiss'"
            )
        self.roots = [Path(p).expanduser().resolve() for p in cluster.shards]
        self._address = cluster.address
        self._options = {"mmap": settings.index.mmap, "params": _ann_params(settings)}
        self._actors: list[Any] | None = None
        self._ray: ModuleType | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> ShardedSnapshot:
        ray, actors = self._started()
        pins = _get(ray, [a.pin.remote() for a in actors])
        return ShardedSnapshot(ray, actors, pins, self.roots)

    def refresh(self) -> None:
        if self._actors is not None:
            for actor in self._actors:
                actor.refresh.remote()

    def writer(self, embedder: Embedder | None = None, *, lock_timeout_s: float | None = None) -> Any:
        raise ConfigError(
            "index.store 'sharded' is read-only: add documents to one of its shards with "
            f"`rag ingest PATH --index SHARD` (cluster.shards: {', '.join(map(str, self.roots))})"
        )

    def _started(self) -> tuple[ModuleType, list[Any]]:
        """The shard actors: found by name when another process (an API replica) started them."""
        with self._lock:
            if self._actors is None or self._ray is None:
                from rag.cluster import connect

                ray = connect(self._address)
                actor = ray.remote(ShardServer)
                self._actors = [
                    actor.options(
                        name=self._name(root),
                        get_if_exists=True,
                        lifetime="detached",
                        num_cpus=0,  # memory-bound; searches are short
                        max_restarts=-1,
                        max_task_retries=3,
                        max_concurrency=SHARD_CONCURRENCY,
                        scheduling_strategy="SPREAD",
                    ).remote(str(root), self._options)
                    for root in self.roots
                ]
                self._ray = ray
            return self._ray, self._actors

    def _name(self, root: Path) -> str:
        """One actor per shard folder and reader options, whichever process asks."""
        digest = hashlib.sha256(repr((str(root), self._options)).encode()).hexdigest()[:16]
        return f"rag-shard-{digest}"


def _ann_params(settings: Settings) -> Any:
    from rag.index.ann import AnnParams

    return AnnParams(**settings.index.ann.model_dump())


def _get(ray: ModuleType, refs: list[Any]) -> list[Any]:
    """``ray.get``; an error a shard raised on purpose (a RagError) is raised as itself, without
    Ray's remote traceback around it."""
    try:
        return list(ray.get(refs))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, RagError):
            raise exc.cause from None
        raise
