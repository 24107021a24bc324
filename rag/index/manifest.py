"""What an index was built with; checked on every open so vectors from two models never mix."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from rag.errors import IndexMismatchError

FORMAT_VERSION = 2  # 2: segments + versioned rows (rag.index.layout); 1: a full copy per version


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SegmentInfo(BaseModel):
    """One immutable vector segment a version reads (rag.index.segments)."""

    number: int  # the version that wrote it; names its files (segments/seg-000007.*)
    vectors: int  # stored vectors, tombstoned ones included until compaction drops them
    kind: str  # the FAISS index kind (rag.index.ann): flat, hnsw, ivf_sq8, ...


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    version: int = 0
    embedding_model: str
    dimension: int
    metric: str = "cosine"  # inner product over L2-normalised float32 vectors
    chunk_tokens: int
    overlap_tokens: int
    created_at: str
    updated_at: str
    documents: int = 0
    chunks: int = 0
    # How the keyword terms were analysed (rag.index.keyword.ANALYZER); None in an index written
    # before keyword search, which then has no keyword terms until its next commit builds them.
    keyword_analyzer: str | None = None
    # The vector segments this version searches, oldest first (format 2; empty in format 1).
    segments: list[SegmentInfo] = []
    # Vectors in those segments whose chunks were deleted (skipped by search until compaction).
    tombstones: int = 0

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n", encoding="utf-8")

    def check_compatible(self, embedding_model: str, dimension: int) -> None:
        """Refuse to mix embedding spaces: a query embedded by another model returns garbage."""
        if self.embedding_model != embedding_model or self.dimension != dimension:
            raise IndexMismatchError(
                f"the index was built with embedding model {self.embedding_model!r} "
                f"(dimension {self.dimension}) but the configured model is {embedding_model!r} "
                f"(dimension {dimension}); set embedding.model back to {self.embedding_model!r} "
                "or rebuild the index into a new directory"
            )
