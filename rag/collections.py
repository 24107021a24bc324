"""Collections: several independent indexes, one directory each, named in requests and on the CLI.

The collection ``default`` is ``index_dir`` itself, so a single-index set-up (and every index
built before collections existed) keeps working unchanged. Any other collection ``<name>`` is the
index directory ``<collections.root>/<name>`` (``<index_dir>/collections/<name>`` unless
configured): its own versions, uploads, jobs and lock, exactly the layout of a single index, so
every guarantee of the index (one writer, atomic commits, crash safety) holds per collection.

Names are restricted to a safe alphabet, checked before any path is built, so a name can never
reach outside the collections root (no ``..``, no separators, no upper case that would collide on
a case-insensitive file system).
"""

from __future__ import annotations

import re
from pathlib import Path

from rag.config import Settings
from rag.errors import RagError
from rag.index import layout

DEFAULT_COLLECTION = "default"
NAME_RULE = "1-64 characters: lower-case letters, digits, '-' and '_', starting with a letter or digit"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ROOT_NAME = "collections"  # under index_dir, when collections.root is not set


class CollectionNameError(RagError, ValueError):
    """A collection name outside NAME_RULE."""


def check_name(name: str) -> str:
    """``name`` when it is a valid collection name; otherwise CollectionNameError."""
    if not _NAME.fullmatch(name):
        raise CollectionNameError(f"{name[:80]!r} is not a collection name ({NAME_RULE})")
    return name


def collections_root(settings: Settings) -> Path:
    return settings.collections.root or settings.index_dir / ROOT_NAME


def collection_dir(settings: Settings, name: str) -> Path:
    """The index directory of collection ``name``."""
    if check_name(name) == DEFAULT_COLLECTION:
        return settings.index_dir
    return collections_root(settings) / name


def settings_for(settings: Settings, name: str) -> Settings:
    """``settings`` with ``index_dir`` pointing at collection ``name``: what every index, ingest
    and job function takes, so none of them needs to know about collections."""
    directory = collection_dir(settings, name)
    if directory == settings.index_dir:
        return settings
    return settings.model_copy(update={"index_dir": directory})


def exists(settings: Settings, name: str) -> bool:
    """The default collection always exists (it may hold no index yet); another exists once its
    directory does (created by its first upload or ``rag ingest --collection``)."""
    return name == DEFAULT_COLLECTION or collection_dir(settings, name).is_dir()


def names(settings: Settings) -> list[str]:
    """Every collection: ``default`` first, then the others by name."""
    root = collections_root(settings)
    found = (
        sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))
        if root.is_dir()
        else []
    )
    return [DEFAULT_COLLECTION, *(n for n in found if n != DEFAULT_COLLECTION)]


def has_index(settings: Settings, name: str) -> bool:
    return (collection_dir(settings, name) / layout.CURRENT).is_file()
