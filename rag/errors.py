"""The library's exception hierarchy. Messages name the bad value and how to fix it; the CLI and
the HTTP API translate these at the edge (exit code + message, status + JSON)."""


class RagError(Exception):
    """Base class for every error the service raises on purpose."""


class ConfigError(RagError):
    """A setting is wrong or a configured model/file cannot be found."""


class LoaderError(RagError):
    """A file cannot be turned into text (encrypted, corrupt, empty, unknown type, too large)."""


class IndexNotFoundError(RagError):
    """No committed index exists at the given directory yet."""


class IndexMismatchError(RagError):
    """The index was built with a different embedding model, dimension or metric."""


class IndexLockedError(RagError):
    """Another process holds the index's writer lock."""


class GenerationError(RagError):
    """The generator failed (model not loadable, endpoint unreachable, bad response)."""


class IndexCorruptError(RagError):
    """A committed index version cannot be read (a damaged manifest, SQLite store or vector file)."""


class IndexFormatError(IndexCorruptError):
    """The index is in an older on-disk format that this release converts but does not read."""


class KeywordIndexMissingError(RagError):
    """Keyword search was asked of an index written before it had keyword terms."""


class UnsupportedModeError(RagError):
    """The configured retriever cannot search in the requested mode."""


class ClusterError(RagError):
    """The Ray cluster (cluster.address) cannot be used: Ray is not installed, the cluster does
    not answer, or its workers cannot start."""
