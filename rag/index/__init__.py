"""The vector index: FAISS for vectors, SQLite for chunk text and metadata, versioned on disk.

Layout of an index directory::

    index/
      CURRENT          name of the committed version, replaced atomically on commit
      v000007/         one complete, immutable version
        vectors.faiss  IndexIDMap2(IndexFlatIP): int64 chunk id -> normalised vector
        store.sqlite   documents and chunks (text, source, page, offsets, hashes)
        manifest.json  embedding model, dimension, metric, chunking, counts, times
      .lock            writer lock (fcntl), shared with other processes

A commit writes a whole new version directory and then swaps CURRENT, so a crash at any moment
leaves either the old or the new version, and readers never see a mix.
"""

from rag.index.manifest import Manifest
from rag.index.reader import IndexReader
from rag.index.writer import IndexWriter

__all__ = ["IndexReader", "IndexWriter", "Manifest"]
