"""Options that several commands take, declared once so their help text cannot drift apart."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import fail

IndexOpt = Annotated[
    Path | None,
    typer.Option("--index", "-i", help="Index directory (default: index_dir from config, ./index)."),
]
CollectionOpt = Annotated[
    str | None,
    typer.Option(
        "--collection",
        help="Collection to use (default: `default`, which is the --index directory itself; "
        "another NAME lives in <index>/collections/NAME, or collections.root/NAME).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: configs/default.yaml; env RAG_CONFIG)."),
]


class Mode(StrEnum):
    """Retrieval modes (rag.retrieval.MODES) as --mode choices."""

    hybrid = "hybrid"
    dense = "dense"
    keyword = "keyword"


ModeOpt = Annotated[
    Mode | None,
    typer.Option(
        "--mode",
        help="hybrid (keywords and meaning fused), dense (meaning only) or keyword (BM25 only); "
        "default: retrieval.mode (hybrid).",
    ),
]
TopKOpt = Annotated[int | None, typer.Option("--top-k", "-k", min=1, max=100, help="Chunks to retrieve.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option("--where", help="Only documents whose metadata has KEY=VALUE (repeatable)."),
]
PrefixOpt = Annotated[str | None, typer.Option(help="Only documents whose source starts with this.")]


def filters(where: list[str] | None, source_prefix: str | None) -> Any:
    """The SearchFilter for --where KEY=VALUE (repeatable) and --source-prefix."""
    from rag.index.filters import SearchFilter

    pairs = {}
    for item in where or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--where {item!r}: write it as KEY=VALUE")
        pairs[key] = value
    return SearchFilter.from_dict({"metadata": pairs, "source_prefix": source_prefix})
