"""The `rag` command line: ingest documents, ask and search them, serve the HTTP API.

Every option can also be set in configs/*.yaml or a RAG_* environment variable; a flag wins.
Errors print one line that says what is wrong and how to fix it, and exit with status 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from rag.config import Settings, load_settings
from rag.errors import RagError

app = typer.Typer(
    help=(
        "Grounded question answering over your documents.\n\n"
        'Typical use: `rag ingest docs/ --index ./index`, then `rag ask "question" --index ./index` '
        "or `rag serve --index ./index` for the HTTP API (docs at http://HOST:PORT/docs)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()
T = TypeVar("T")

IndexOpt = Annotated[
    Path | None,
    typer.Option("--index", "-i", help="Index directory (default: index_dir from config, ./index)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: configs/default.yaml; env RAG_CONFIG)."),
]
TopKOpt = Annotated[int | None, typer.Option("--top-k", "-k", min=1, max=100, help="Chunks to retrieve.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option("--where", help="Only documents whose metadata has KEY=VALUE (repeatable)."),
]
PrefixOpt = Annotated[str | None, typer.Option(help="Only documents whose source starts with this.")]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    if config is not None:
        os.environ["RAG_CONFIG"] = str(config)
    return load_settings(**overrides)


def _run(action: Callable[[], T]) -> T:
    """Translate the library's errors into one clear line and exit status 1."""
    try:
        return action()
    except RagError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command()
def ingest(
    # readable=False: click's own check would abort the whole batch on one unreadable path; the
    # pipeline reports such a path as a failed file and indexes the rest.
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (walked recursively).", readable=False)
    ],
    index: IndexOpt = None,
    config: ConfigOpt = None,
    sync: Annotated[
        bool,
        typer.Option("--sync", help="Also delete indexed documents whose files are gone from these folders."),
    ] = False,
    chunk_tokens: Annotated[int | None, typer.Option(help="Chunk size in embedder tokens.")] = None,
    overlap_tokens: Annotated[int | None, typer.Option(help="Overlap between chunks, in tokens.")] = None,
    metadata: Annotated[
        Path | None,
        typer.Option(
            help="JSON file mapping a file path (as given) or document id to a metadata object; "
            "stored with the document, returned in citations, usable in filters."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add or update documents (PDF, text, Markdown, HTML) in the index.

    Unchanged files are skipped and identical chunks are embedded once, so re-running on the same
    folder is cheap. A file that cannot be read is reported and the rest are indexed.
    """
    from ingest.pipeline import ingest as run_ingest
    from rag.embedding import make_embedder

    settings = _settings(
        config,
        index_dir=index,
        **{"chunking.chunk_tokens": chunk_tokens, "chunking.overlap_tokens": overlap_tokens},
    )
    meta = _read_metadata(metadata) if metadata else None
    embedder = _run(lambda: make_embedder(settings.embedding))
    with _progress(quiet=as_json) as sink:
        summary = _run(lambda: run_ingest(paths, settings, embedder, sync=sync, metadata=meta, progress=sink))
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    else:
        _print_summary(summary.to_dict(), settings.index_dir)
    if summary.failed and summary.failed == summary.documents:
        raise typer.Exit(1)


@app.command()
def delete(
    doc_ids: Annotated[list[str], typer.Argument(help="Document ids (see `rag documents`).")],
    index: IndexOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove documents and all their chunks from the index."""
    from rag.index.writer import IndexWriter

    settings = _settings(config, index_dir=index)
    # Deleting needs no embedding model: the writer takes the index's own identity.
    writer = _run(
        lambda: IndexWriter.for_existing(settings.index_dir, lock_timeout_s=settings.ingest.lock_timeout_s)
    )
    with writer:
        missing = [d for d in doc_ids if not writer.delete(d)]
        if writer.changed:
            writer.commit()
    for doc_id in missing:
        console.print(f"[yellow]not in the index:[/] {doc_id}")
    console.print(f"deleted {len(doc_ids) - len(missing)} document(s)")
    if missing:
        raise typer.Exit(1)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    index: IndexOpt = None,
    config: ConfigOpt = None,
    top_k: TopKOpt = None,
    where: WhereOpt = None,
    source_prefix: PrefixOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the chunks most similar to QUERY, with cosine scores; no LLM involved."""
    from rag.components import build_pipeline

    settings = _settings(config, index_dir=index)
    pipeline = _run(lambda: build_pipeline(settings))
    filters = _filters(where, source_prefix)
    hits = _run(lambda: pipeline.search(query, top_k, filters=filters))
    if as_json:
        from api.schemas import ChunkOut

        out.print_json(
            json.dumps([ChunkOut.from_hit(h, rank).model_dump() for rank, h in enumerate(hits, 1)])
        )
        return
    for rank, hit in enumerate(hits, 1):
        page = f" p.{hit.chunk.page}" if hit.chunk.page else ""
        out.print(f"[bold]{rank}.[/] {hit.score:.3f}  [cyan]{hit.chunk.source}{page}[/]")
        out.print(
            "   " + hit.chunk.text[:300].replace("\n", " ") + ("…" if len(hit.chunk.text) > 300 else "")
        )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="A question about the indexed documents.")],
    index: IndexOpt = None,
    config: ConfigOpt = None,
    top_k: TopKOpt = None,
    where: WhereOpt = None,
    source_prefix: PrefixOpt = None,
    server: Annotated[
        str | None,
        typer.Option(help="URL of a running `rag serve` (e.g. http://127.0.0.1:8000) to ask instead."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer QUESTION from the index, with citations, or say that the documents do not tell.

    Without --server this loads the generator in this process (the default local model takes
    about a minute); for many questions start `rag serve` once and pass --server.
    """
    from api.schemas import QueryResponse

    filters = _filters(where, source_prefix)
    if server:
        response = _run(lambda: _ask_server(server, question, top_k, filters))
    else:
        response = QueryResponse.from_answer(_ask_local(question, index, config, top_k, filters))
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
    question: str, index: Path | None, config: Path | None, top_k: int | None, filters: Any
) -> Any:
    from rag.components import build_generator, build_pipeline

    settings = _settings(config, index_dir=index)
    pipeline = _run(lambda: build_pipeline(settings))
    with console.status("loading the generator…"):
        pipeline.generator = _run(lambda: build_generator(settings))
    with console.status("thinking…"):
        return _run(lambda: pipeline.answer(question, top_k, filters=filters))


def _ask_server(url: str, question: str, top_k: int | None, filters: Any) -> Any:
    import httpx

    from api.schemas import QueryResponse
    from rag.errors import RagError

    try:
        body = {"question": question, "top_k": top_k}
        if filters is not None:
            body["filters"] = {"metadata": dict(filters.metadata), "source_prefix": filters.source_prefix}
        r = httpx.post(url.rstrip("/") + "/v1/query", json=body, timeout=600)
    except httpx.TransportError as exc:
        raise RagError(f"cannot reach {url} ({exc}); is `rag serve` running there?") from None
    if r.status_code != 200:
        raise RagError(f"{url} answered {r.status_code}: {r.json().get('error', r.text)}")
    return QueryResponse.model_validate(r.json())


@app.command()
def documents(index: IndexOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the indexed documents: id, chunks, when indexed, metadata."""
    from rag.index.reader import IndexReader

    settings = _settings(config, index_dir=index)
    docs = _run(lambda: IndexReader.open(settings.index_dir).documents())
    if as_json:
        out.print_json(json.dumps(docs))
        return
    for d in docs:
        meta = f"  {json.dumps(d['metadata'])}" if d["metadata"] else ""
        out.print(f"{d['id']}  [dim]{d['chunks']} chunks, {d['indexed_at']}[/]{meta}", highlight=False)
    console.print(f"{len(docs)} document(s) in {settings.index_dir}")


@app.command()
def info(index: IndexOpt = None, config: ConfigOpt = None) -> None:
    """Show the index's manifest: version, embedding model, dimension, chunking, counts, times."""
    from rag.index.reader import IndexReader

    settings = _settings(config, index_dir=index)
    manifest = _run(lambda: IndexReader.open(settings.index_dir).manifest)
    out.print_json(manifest.model_dump_json())


@app.command()
def serve(
    index: IndexOpt = None,
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs). The generator loads in the background;
    /healthz reports when it is ready, and /v1/search works before that."""
    import uvicorn

    from api.app import create_app

    settings = _settings(config, index_dir=index, **{"server.host": host, "server.port": port})
    server = settings.server
    # After SIGTERM, requests still running after graceful_shutdown_s are cancelled (and their
    # worker threads told to stop, api/cancel.py) instead of being waited for indefinitely.
    uvicorn.run(
        create_app(settings),
        host=server.host,
        port=server.port,
        log_level="info",
        timeout_graceful_shutdown=server.graceful_shutdown_s,
    )


def _filters(where: list[str] | None, source_prefix: str | None) -> Any:
    from rag.index.filters import SearchFilter

    pairs = {}
    for item in where or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            console.print(f"[bold red]error:[/] --where {item!r}: write it as KEY=VALUE")
            raise typer.Exit(1)
        pairs[key] = value
    return SearchFilter.from_dict({"metadata": pairs, "source_prefix": source_prefix})


def _read_metadata(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        console.print(f"[bold red]error:[/] --metadata {path}: nested too deeply to read; flatten it")
        raise typer.Exit(1) from None
    except (OSError, ValueError) as exc:
        console.print(f"[bold red]error:[/] --metadata {path}: {exc}")
        raise typer.Exit(1) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        console.print(f'[bold red]error:[/] --metadata {path}: expected {{"path": {{...}}, ...}}')
        raise typer.Exit(1)
    return data


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    from ingest.pipeline import NullProgress

    if quiet:
        yield NullProgress()
        return
    columns = (
        TextColumn("{task.description:<6}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        yield _RichSink(bar)


class _RateColumn(ProgressColumn):
    """Items per second: the number that says whether the embedder is the bottleneck."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:7.1f}/s" if task.speed else " " * 9, style="progress.data.speed")


class _RichSink:
    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._tasks: dict[str, Any] = {}

    def start(self, stage: str, total: int) -> None:
        if stage in self._tasks:  # the stage's total grew as documents streamed in
            self._bar.update(self._tasks[stage], total=max(total, 0))
        else:
            self._tasks[stage] = self._bar.add_task(stage, total=max(total, 0))

    def advance(self, stage: str, n: int = 1) -> None:
        self._bar.advance(self._tasks[stage], n)


def _print_summary(s: dict[str, Any], index_dir: Path) -> None:
    out.print(
        f"[bold]{s['documents']}[/] files: {s['added']} added, {s['updated']} updated, "
        f"{s['unchanged']} unchanged, {s['deleted']} deleted, {s['failed']} failed; "
        f"{s['chunks']} chunks written ({s['chunks_embedded']} embedded) in {s['seconds']:.1f} s "
        f"→ {index_dir}" + (f" (version {s['index_version']})" if s["index_version"] else "")
    )
    for err in s["errors"]:
        out.print(f"  [red]failed[/] {err['error']}")


def _register_eval() -> None:
    from eval.cli import eval_command

    app.command("eval")(eval_command)


_register_eval()

if __name__ == "__main__":
    app()
