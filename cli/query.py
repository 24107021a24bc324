"""Commands that read the index: search (no LLM) and ask (grounded answer, local or via a server)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import console, out, run, settings
from cli.options import (
    CollectionOpt,
    ConfigOpt,
    IndexOpt,
    JsonOpt,
    ModeOpt,
    PrefixOpt,
    TopKOpt,
    WhereOpt,
    filters,
)
from rag.errors import RagError


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    index: IndexOpt = None,
    config: ConfigOpt = None,
    collection: CollectionOpt = None,
    top_k: TopKOpt = None,
    where: WhereOpt = None,
    source_prefix: PrefixOpt = None,
    mode: ModeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the chunks that best match QUERY, with their scores (fused, cosine, BM25); no LLM.

    Try `--mode keyword` for exact names (options, error codes, file paths) and `--mode dense`
    to see what meaning alone finds."""
    from rag.components import build_pipeline

    cfg = settings(config, collection, index_dir=index)
    pipeline = run(lambda: build_pipeline(cfg))
    chosen = filters(where, source_prefix)
    hits = run(lambda: pipeline.search(query, top_k, filters=chosen, mode=mode and mode.value))
    if as_json:
        from api.schemas import ChunkOut

        out.print_json(
            json.dumps([ChunkOut.from_hit(h, rank).model_dump() for rank, h in enumerate(hits, 1)])
        )
        return
    for rank, hit in enumerate(hits, 1):
        page = f" p.{hit.chunk.page}" if hit.chunk.page else ""
        out.print(
            f"[bold]{rank}.[/] {hit.score:.3f}  [cyan]{hit.chunk.source}{page}[/]  [dim]{_scores(hit)}[/]"
        )
        out.print(
            "   " + hit.chunk.text[:300].replace("\n", " ") + ("…" if len(hit.chunk.text) > 300 else "")
        )


def _scores(hit: Any) -> str:
    parts = [
        f"{name} {value:.3f}"
        for name, value in (("cosine", hit.dense_score), ("bm25", hit.keyword_score))
        if value is not None
    ]
    return ", ".join(parts)


def ask(
    question: Annotated[str, typer.Argument(help="A question about the indexed documents.")],
    index: IndexOpt = None,
    config: ConfigOpt = None,
    collection: CollectionOpt = None,
    top_k: TopKOpt = None,
    where: WhereOpt = None,
    source_prefix: PrefixOpt = None,
    mode: ModeOpt = None,
    server: Annotated[
        str | None,
        typer.Option(help="URL of a running `rag serve` (e.g. http://127.0.0.1:8000) to ask instead."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="RAG_API_KEY", help="API key for --server (`rag keys create`); env RAG_API_KEY."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer QUESTION from the index, with citations, or say that the documents do not tell.

    Without --server this loads the generator in this process (the default local model takes
    about a minute); for many questions start `rag serve` once and pass --server.
    """
    from api.schemas import QueryResponse

    chosen = filters(where, source_prefix)
    if server:
        request = _ServerQuestion(server, collection, api_key, question, top_k, chosen, mode and mode.value)
        response = run(lambda: _ask_server(request))
    else:
        response = QueryResponse.from_answer(
            _ask_local(question, index, config, collection, top_k, chosen, mode and mode.value)
        )
    if as_json:
        out.print_json(response.model_dump_json())
        return
    out.print(response.answer, highlight=False)
    for c in response.citations:
        page = f", page {c.page}" if c.page else ""
        out.print(f"  [{c.n}] {c.source}{page}  (score {c.score:.2f})", highlight=False)
    t = response.timings
    console.print(
        f"[dim]retrieve {t.retrieve_ms:.0f} ms, generate {t.generate_ms:.0f} ms"
        + (f"; refused: {response.reason}" if response.refused else "")
        + "[/]"
    )


def _ask_local(
    question: str,
    index: Path | None,
    config: Path | None,
    collection: str | None,
    top_k: int | None,
    chosen: Any,
    mode: str | None,
) -> Any:
    from rag.components import build_generator, build_pipeline

    cfg = settings(config, collection, index_dir=index)
    pipeline = run(lambda: build_pipeline(cfg))
    with console.status("loading the generator…"):
        pipeline.generator = run(lambda: build_generator(cfg))
    with console.status("thinking…"):
        return run(lambda: pipeline.answer(question, top_k, filters=chosen, mode=mode))


@dataclass(frozen=True)
class _ServerQuestion:
    url: str
    collection: str | None
    api_key: str | None
    question: str
    top_k: int | None
    chosen: Any
    mode: str | None


def _ask_server(q: _ServerQuestion) -> Any:
    """POST the question to a running `rag serve`; its errors become RagErrors with its message."""
    import httpx

    from api.schemas import QueryResponse

    url = q.url
    try:
        body: dict[str, Any] = {"question": q.question, "top_k": q.top_k, "mode": q.mode}
        if q.chosen is not None:
            body["filters"] = {"metadata": dict(q.chosen.metadata), "source_prefix": q.chosen.source_prefix}
        from api.routing import prefix_of

        prefix = prefix_of(q.collection)
        headers = {"Authorization": f"Bearer {q.api_key}"} if q.api_key else {}
        r = httpx.post(url.rstrip("/") + prefix + "/query", json=body, headers=headers, timeout=600)
    except httpx.TransportError as exc:
        raise RagError(f"cannot reach {url} ({exc}); is `rag serve` running there?") from None
    if r.status_code != 200:
        raise RagError(f"{url} answered {r.status_code}: {r.json().get('error', r.text)}")
    return QueryResponse.model_validate(r.json())
