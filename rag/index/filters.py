"""Which documents a search may return: user metadata and where the document came from.

A filter is evaluated per document (there are far fewer documents than chunks) and turned into
the set of chunk ids that FAISS may score, so the top-k is taken *among matching chunks*: a
filtered query still returns k results whenever k matching chunks exist.

Semantics, kept deliberately small:

* ``metadata={"field": value, ...}``: every field must match (AND). A document matches a field
  when its value equals ``value`` (JSON equality: ``true`` is not ``1``, ``"1"`` is not ``1``);
  when the document's value is a list, when the list contains ``value``; when ``value`` is a
  list, when the document's value is any of its items (OR).
* ``source_prefix="..."``: the document's source (the path as ingested, or ``uploads/<name>``)
  starts with the prefix; with ``match_ids`` (the CLI) its id (the normalised absolute path) may
  match instead. Over HTTP ids are not matched: a client could otherwise probe where on the
  server's disk the documents live, which the API never shows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SearchFilter:
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source_prefix: str | None = None
    match_ids: bool = True

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, *, match_ids: bool = True) -> SearchFilter | None:
        """``{"metadata": {...}, "source_prefix": "..."}`` as sent over HTTP; None when empty."""
        if not raw:
            return None
        made = cls(
            metadata=dict(raw.get("metadata") or {}),
            source_prefix=raw.get("source_prefix") or None,
            match_ids=match_ids,
        )
        return None if made.is_empty else made

    @property
    def is_empty(self) -> bool:
        return not self.metadata and not self.source_prefix

    @property
    def key(self) -> str:
        """A canonical string, for caching the chunk ids a filter selects."""
        return json.dumps([self.metadata, self.source_prefix, self.match_ids], sort_keys=True, default=str)

    def matches(self, doc_id: str, source: str, metadata: Mapping[str, Any]) -> bool:
        if self.source_prefix and not (
            source.startswith(self.source_prefix)
            or (self.match_ids and doc_id.startswith(self.source_prefix))
        ):
            return False
        return all(
            name in metadata and _field_matches(metadata[name], wanted)
            for name, wanted in self.metadata.items()
        )


def _field_matches(have: Any, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, list) else [wanted]
    values = have if isinstance(have, list) else [have]
    return any(_same(v, o) for v in values for o in options)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: Python says True == 1 and 1 == 1.0; JSON users mean bool and number apart."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b
