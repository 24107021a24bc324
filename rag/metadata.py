"""Bounds on user metadata, checked wherever metadata enters the index.

Metadata is stored as JSON with its document and returned with every listing, hit and citation.
A value nested hundreds of levels deep is stored without complaint but then breaks every read
that serialises it (JSON encoders and pydantic recurse per level), so the bounds are checked
before anything is written: by the HTTP upload (a 422 for the whole upload) and by the ingest
pipeline for every file (a failed file, whichever edge the metadata came from). The walk below is
iterative, so checking a hostile value cannot itself overflow the stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rag.config import ServerSettings
from rag.errors import RagError

HINT = "server.{field} (env RAG_SERVER__{env})"


class MetadataError(RagError):
    """User metadata is over one of the configured bounds (depth, keys, size)."""


@dataclass(frozen=True)
class MetadataLimits:
    max_depth: int
    max_keys: int
    max_bytes: int

    @classmethod
    def from_settings(cls, server: ServerSettings) -> MetadataLimits:
        return cls(server.max_metadata_depth, server.max_metadata_keys, server.max_metadata_bytes)


def _hint(field: str) -> str:
    return HINT.format(field=field, env=field.upper())


def depth_and_keys(value: Any, stop_at_depth: int) -> tuple[int, int]:
    """Nesting depth (an object or list is one level, a scalar none) and the number of object
    keys at every level. The walk stops descending past ``stop_at_depth``, so the depth it
    reports is at most ``stop_at_depth + 1``: enough to know the bound is broken."""
    depth = keys = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        depth = max(depth, level)
        if level > stop_at_depth:
            continue
        if isinstance(node, dict):
            keys += len(node)
            stack.extend((child, level + 1) for child in node.values())
        else:
            stack.extend((child, level + 1) for child in node)
    return depth, keys


def check_metadata(value: Any, limits: MetadataLimits, owner: str) -> None:
    """Raise MetadataError unless ``value`` (one document's metadata, a JSON object) is within
    ``limits``; ``owner`` names the document or file in the message."""
    if not isinstance(value, dict):
        raise MetadataError(f"metadata of {owner!r} must be a JSON object, got {type(value).__name__}")
    depth, keys = depth_and_keys(value, limits.max_depth)
    if depth > limits.max_depth:
        raise MetadataError(
            f"metadata of {owner!r} is nested more than {limits.max_depth} levels deep (objects "
            f"and lists count one level each); flatten it or raise {_hint('max_metadata_depth')}"
        )
    if keys > limits.max_keys:
        raise MetadataError(
            f"metadata of {owner!r} has {keys} keys, over the limit of {limits.max_keys}; keep "
            f"fewer fields or raise {_hint('max_metadata_keys')}"
        )
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > limits.max_bytes:
        raise MetadataError(
            f"metadata of {owner!r} is {size} bytes of JSON, over the limit of {limits.max_bytes} "
            f"bytes; shorten its values or raise {_hint('max_metadata_bytes')}"
        )
