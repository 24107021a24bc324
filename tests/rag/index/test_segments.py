"""Segments through the writer and reader: what a commit writes, merging, compaction, settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.config import AnnSettings, load_settings
from rag.index import ann, layout, segments
from rag.index.faiss_store import FaissSqliteStore
from rag.index.reader import IndexReader
from rag.index.writer import IndexWriter
from rag.types import Chunk, Document

DIM = 16
IDENTITY = {"embedding_model": "test-vectors", "dimension": DIM, "chunk_tokens": 10, "overlap_tokens": 0}


def _doc(name: str, n: int, rng: np.random.Generator) -> tuple[Document, list[Chunk], np.ndarray]:
    texts = [f"{name} part {i} words" for i in range(n)]
    doc = Document(id=name, source=name, text=" ".join(texts), pages=[])
    chunks = [
        Chunk(document_id=name, source=name, page=None, start=i, end=i + 1, text=t)
        for i, t in enumerate(texts)
    ]
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return doc, chunks, v / np.linalg.norm(v, axis=1, keepdims=True)


def _commit(root: Path, *docs: tuple[Document, list[Chunk], np.ndarray], **options: object) -> None:
    with IndexWriter(root, **IDENTITY, **options) as writer:  # type: ignore[arg-type]
        for doc, chunks, vectors in docs:
            writer.upsert(doc, chunks, vectors)
        writer.commit()


def test_the_config_section_mirrors_the_ann_defaults() -> None:
    """index.ann in the settings and AnnParams in the library must not drift apart."""
    assert ann.AnnParams(**AnnSettings().model_dump()) == ann.AnnParams()


def test_a_commit_writes_one_segment_of_its_own_vectors_and_touches_no_other(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "index"
    _commit(root, _doc("a", 30, rng), _doc("b", 30, rng))
    first = {p.name: p.stat().st_mtime_ns for p in segments.files(root)}
    _commit(root, _doc("c", 5, rng))
    reader = IndexReader.open(root)
    assert [(s.number, s.vectors) for s in reader.manifest.segments] == [(1, 60), (2, 5)]
    after = {p.name: p.stat().st_mtime_ns for p in segments.files(root)}
    assert {k: after[k] for k in first} == first  # the old segment's files are untouched
    assert set(after) - set(first) == {"seg-000002.faiss", "seg-000002.ids.npy"}
    reader.check_consistent()


def test_small_segments_are_merged_once_there_are_too_many(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "index"
    for i in range(4):
        _commit(root, _doc(f"d{i}", 3, rng), merge_segments=2)
    reader = IndexReader.open(root)
    reader.check_consistent()
    assert len(reader.manifest.segments) <= 2
    assert len(reader.documents()) == 4 and reader.size == 12
    # The merge is a version of its own: commits 1-4 plus at least one merge.
    assert reader.version > 4


def test_compaction_drops_tombstones_and_keeps_every_search_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    root = tmp_path / "index"
    docs = [_doc(f"d{i}", 8, rng) for i in range(6)]
    _commit(root, *docs[:3])
    _commit(root, *docs[3:])
    with IndexWriter.for_existing(root) as writer:
        writer.delete("d1")
        writer.delete("d4")
        writer.commit()
    before = IndexReader.open(root)
    assert before.manifest.tombstones == 16
    queries = rng.standard_normal((20, DIM)).astype(np.float32)
    expected = [[h.chunk.id for h in before.search(q, 10)] for q in queries]
    with IndexWriter.for_existing(root) as writer:
        manifest = writer.compact()
    assert len(manifest.segments) == 1 and manifest.segments[0].vectors == 32 and manifest.tombstones == 0
    after = IndexReader.open(root)
    after.check_consistent()
    assert [[h.chunk.id for h in after.search(q, 10)] for q in queries] == expected
    with IndexWriter.for_existing(root) as writer:  # nothing left to merge: no new version
        assert writer.compact().version == manifest.version


def test_an_old_reader_keeps_answering_from_its_version_while_documents_are_replaced(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "index"
    a = _doc("a", 4, rng)
    _commit(root, a)
    reader = IndexReader.open(root)
    hit_before = reader.search(a[2][0], 1)[0]
    _commit(root, _doc("a", 4, rng))  # the same document, new chunks and vectors
    assert reader.search(a[2][0], 1)[0].chunk.id == hit_before.chunk.id  # still version 1's chunk
    assert reader.is_stale()
    fresh = IndexReader.open(root)
    assert fresh.search(a[2][0], 1)[0].chunk.id != hit_before.chunk.id
    fresh.check_consistent()


def test_the_store_passes_index_settings_to_its_reader_and_writer(tmp_path: Path) -> None:
    settings = load_settings(
        index_dir=tmp_path / "index",
        **{"index.ann.kind": "hnsw", "index.merge_segments": 3, "index.mmap": False},
    )
    store = FaissSqliteStore(settings)
    rng = np.random.default_rng(4)
    with store.writer(_Identity()) as writer:
        doc, chunks, vectors = _doc("a", 40, rng)
        writer.upsert(doc, chunks, vectors)
        writer.commit()
    snapshot = store.snapshot()
    assert [s.kind for s in snapshot.manifest.segments] == ["hnsw"]
    assert ann.kind_of(snapshot._parts[0].index) == "hnsw"


def test_a_legacy_index_is_refused_by_readers_with_the_command_that_converts_it(tmp_path: Path) -> None:
    from rag.errors import IndexFormatError

    root = tmp_path / "index"
    (root / "v000003").mkdir(parents=True)
    (root / layout.CURRENT).write_text("v000003\n")
    with pytest.raises(IndexFormatError, match=r"rag compact --index"):
        IndexReader.open(root)


class _Identity:
    """Only what a writer reads of an embedder (its identity); no vectors are embedded here."""

    model_id = "test-vectors"
    dim = DIM


def test_a_quantized_segment_compacts_and_its_vectors_are_reused_as_unit_vectors(tmp_path: Path) -> None:
    """Decoded SQ8 vectors are not exactly unit length; compaction and vector reuse must still
    write a valid segment (they renormalise) and find the same neighbours."""
    rng = np.random.default_rng(5)
    root = tmp_path / "index"
    params = ann.AnnParams(kind="ivf_sq8")
    docs = [_doc(f"d{i}", 100, rng) for i in range(120)]  # 12,000 vectors: enough to train IVF
    _commit(root, *docs, ann_params=params)
    assert IndexReader.open(root).manifest.segments[0].kind == "ivf_sq8"
    with IndexWriter.for_existing(root, ann_params=params) as writer:
        writer.delete("d0")
        reused = writer.vectors_for_hashes({docs[1][1][0].hash})[docs[1][1][0].hash]
        assert abs(float(np.linalg.norm(reused)) - 1.0) < 1e-5
        writer.commit()
    with IndexWriter.for_existing(root, ann_params=params) as writer:
        manifest = writer.compact()
    assert manifest.tombstones == 0 and manifest.segments[0].vectors == 11_900
    reader = IndexReader.open(root, params=params)
    reader.check_consistent()
    for doc, _, vectors in docs[1:6]:
        assert reader.search(vectors[3], 1)[0].chunk.document_id == doc.id
