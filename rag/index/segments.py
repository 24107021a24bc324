"""Immutable vector segments: what a commit writes instead of a copy of every vector.

A segment holds the vectors one commit added (or one compaction merged), in two files under
``segments/``: ``seg-NNNNNN.faiss`` (a FAISS index of the kind rag.index.ann picks for its size)
and ``seg-NNNNNN.ids.npy`` (its chunk ids, sorted, to route a lookup by id to its segment without
asking FAISS). Files are written under temporary names and renamed, and never change afterwards,
so several readers (and processes, through the page cache of memory-mapped files) share them.

A version searches every segment its manifest names and merges the top-k; vectors of deleted
chunks (tombstones) are skipped inside each segment's search, so they never take a result's
place, and metadata filters are applied inside each search too (rag.index.ann).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.fsutil import atomic_file
from rag.index import ann, layout
from rag.index.manifest import SegmentInfo

_FILE = re.compile(r"seg-(\d{6,})\.(faiss|ids\.npy)")


def _paths(root: Path, number: int) -> tuple[Path, Path]:
    folder = Path(root) / layout.SEGMENTS
    return folder / f"seg-{number:06d}.faiss", folder / f"seg-{number:06d}.ids.npy"


def file_number(path: Path) -> int | None:
    """The segment number of a segment file's name, None for anything else (temp files too)."""
    match = _FILE.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def files(root: Path) -> list[Path]:
    """Every file in ``segments/``: segment files, and temp files a crash left behind."""
    folder = Path(root) / layout.SEGMENTS
    return sorted(folder.iterdir()) if folder.is_dir() else []


@dataclass
class Segment:
    info: SegmentInfo
    index: faiss.Index
    ids: np.ndarray  # every id stored, sorted (int64)

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """A mask: which of ``ids`` this segment stores."""
        if len(self.ids) == 0 or len(ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.asarray(self.ids[at] == ids)

    def own(self, ids: np.ndarray | None) -> np.ndarray | None:
        """The subset of ``ids`` stored here (None stays None: no restriction)."""
        return None if ids is None else ids[self.holds(ids)]


def write(
    root: Path,
    number: int,
    ids: np.ndarray,
    vectors: np.ndarray,
    params: ann.AnnParams,
    before_rename: Callable[[], None] | None = None,
) -> SegmentInfo:
    """Build and durably write segment ``number``; nothing names it until a manifest does."""
    order = np.argsort(ids, kind="stable")
    ids = np.ascontiguousarray(ids[order], dtype=np.int64)
    vectors = np.ascontiguousarray(vectors[order], dtype=np.float32)
    index = ann.build(vectors, ids, params)
    index_path, ids_path = _paths(root, number)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(ids_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, ids)
    with atomic_file(index_path) as tmp:
        ann.write(index, tmp)
        if before_rename is not None:
            before_rename()
    return SegmentInfo(number=number, vectors=len(ids), kind=ann.kind_for(len(ids), params))


def open_segment(root: Path, info: SegmentInfo, *, mmap: bool) -> Segment:
    """Open a committed segment; FileNotFoundError when a file is missing (the caller re-reads
    CURRENT: the version may have been pruned meanwhile)."""
    index_path, ids_path = _paths(root, info.number)
    if not index_path.is_file() or not ids_path.is_file():
        raise FileNotFoundError(index_path)
    ids = np.load(ids_path, mmap_mode="r" if mmap else None)
    return Segment(info=info, index=ann.read(index_path, mmap=mmap), ids=ids)


def search(
    parts: Sequence[Segment],
    query: np.ndarray,
    k: int,
    params: ann.AnnParams,
    *,
    allowed: np.ndarray | None = None,
    excluded: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """The top ``k`` (id, score) over all segments, best first: each segment's own top-k (under
    the same filter and tombstones), merged. Exact merge: a global top-k hit is in its segment's
    top-k."""
    found: list[tuple[float, int]] = []
    q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
    for part in parts:
        mine = part.own(allowed)
        if mine is not None and len(mine) == 0:
            continue
        dead = part.own(excluded)
        scores, ids = ann.search(
            part.index,
            q,
            k,
            allowed=mine,
            excluded=dead if dead is not None and len(dead) else None,
            params=params,
        )
        found.extend((float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0)
    found.sort(key=lambda hit: (-hit[0], hit[1]))
    return [(i, s) for s, i in found[:k]]


def vectors(parts: Sequence[Segment], ids: Sequence[int], dim: int) -> np.ndarray:
    """The stored vector of each id (one row each, in order); KeyError for an id none holds.

    Quantized kinds (ivf_sq8, ivf_pq) return their decoded vectors, renormalised: a cosine index
    holds unit vectors, and these are reused as such (compaction, identical chunk text); a
    decoded SQ8 vector is within ~0.01 of its norm and its direction barely moves."""
    wanted = np.asarray(ids, dtype=np.int64)
    out = np.zeros((len(wanted), dim), dtype=np.float32)
    todo = np.ones(len(wanted), dtype=bool)
    for part in parts:
        mask = todo & part.holds(wanted)
        if mask.any():
            out[mask] = ann.reconstruct(part.index, wanted[mask])
            todo &= ~mask
    if todo.any():
        raise KeyError(f"no segment holds chunk ids {wanted[todo][:5].tolist()}")
    if len(out):
        faiss.normalize_L2(out)
    return out


def all_ids(parts: Sequence[Segment]) -> np.ndarray:
    return np.concatenate([np.asarray(p.ids) for p in parts]) if parts else np.zeros(0, dtype=np.int64)
