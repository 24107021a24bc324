"""Commands that change or describe the index: ingest, delete, documents, info."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from cli.console import console, fail, out, progress, run, settings
from cli.options import CollectionOpt, ConfigOpt, IndexOpt, JsonOpt


def ingest(
    # readable=False: click's own check would abort the whole batch on one unreadable path; the
    # pipeline reports such a path as a failed file and indexes the rest.
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (walked recursively).", readable=False)
    ],
    index: IndexOpt = None,
    config: ConfigOpt = None,
    collection: CollectionOpt = None,
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
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Parse and embed on the Ray cluster at ADDRESS (auto, HOST:PORT or ray://HOST:10001; "
            "cluster.address in config); this process still writes and commits the index. Needs the "
            "ray extra (pip install 'rag-service[ray]').",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add or update documents (PDF, text, Markdown, HTML) in the index.

    Unchanged files are skipped and identical chunks are embedded once, so re-running on the same
    folder is cheap. A file that cannot be read is reported and the rest are indexed. With --ray,
    the cluster's workers do the parsing and embedding (docs/scale-out.md), with the same result.
    """
    from ingest.pipeline import ingest as run_ingest
    from rag.embedding import make_lazy_embedder

    cfg = settings(
        config,
        collection,
        index_dir=index,
        **{
            "chunking.chunk_tokens": chunk_tokens,
            "chunking.overlap_tokens": overlap_tokens,
            "cluster.address": ray,
        },
    )
    meta = _read_metadata(metadata) if metadata else None
    # Loaded only if some file needs embedding: a no-op re-ingest never loads the model.
    embedder = run(lambda: make_lazy_embedder(cfg.embedding))
    with _progress(quiet=as_json) as sink:
        summary = run(lambda: run_ingest(paths, cfg, embedder, sync=sync, metadata=meta, progress=sink))
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    else:
        _print_summary(summary.to_dict(), cfg.index_dir)
    if summary.failed and summary.failed == summary.documents:
        raise typer.Exit(1)


def delete(
    doc_ids: Annotated[list[str], typer.Argument(help="Document ids (see `rag documents`).")],
    index: IndexOpt = None,
    config: ConfigOpt = None,
    collection: CollectionOpt = None,
) -> None:
    """Remove documents and all their chunks from the index."""
    from rag.components import build_store

    cfg = settings(config, collection, index_dir=index)
    # Deleting needs no embedding model: the writer takes the index's own identity.
    writer = run(lambda: build_store(cfg).writer())
    with writer:
        missing = [d for d in doc_ids if not writer.delete(d)]
        if writer.changed:
            writer.commit()
    for doc_id in missing:
        console.print(f"[yellow]not in the index:[/] {doc_id}")
    console.print(f"deleted {len(doc_ids) - len(missing)} document(s)")
    if missing:
        raise typer.Exit(1)


def documents(
    index: IndexOpt = None,
    config: ConfigOpt = None,
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the indexed documents: id, chunks, when indexed, metadata."""
    from rag.components import build_store

    cfg = settings(config, collection, index_dir=index)
    docs = run(lambda: build_store(cfg).snapshot().documents())
    if as_json:
        out.print_json(json.dumps(docs))
        return
    for d in docs:
        meta = f"  {json.dumps(d['metadata'])}" if d["metadata"] else ""
        out.print(f"{d['id']}  [dim]{d['chunks']} chunks, {d['indexed_at']}[/]{meta}", highlight=False)
    console.print(f"{len(docs)} document(s) in {cfg.index_dir}")


def info(index: IndexOpt = None, config: ConfigOpt = None, collection: CollectionOpt = None) -> None:
    """Show the index's manifest: version, embedding model, dimension, chunking, counts, times."""
    from rag.components import build_store

    cfg = settings(config, collection, index_dir=index)
    manifest = run(lambda: build_store(cfg).snapshot().manifest)
    out.print_json(manifest.model_dump_json())


def _read_metadata(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        fail(f"--metadata {path}: nested too deeply to read; flatten it")
    except (OSError, ValueError) as exc:
        fail(f"--metadata {path}: {exc}")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        fail(f'--metadata {path}: expected {{"path": {{...}}, ...}}')
    return data


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """One bar per ingest stage (parse, chunk, embed, …), or none with --json."""
    from ingest.pipeline import NullProgress

    if quiet:
        yield NullProgress()
        return
    with progress(TextColumn("{task.description:<6}"), _RateColumn()) as bar:
        yield _RichSink(bar)


class _RateColumn(ProgressColumn):
    """Items per second: the number that says whether the embedder is the bottleneck."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:7.1f}/s" if task.speed else " " * 9, style="progress.data.speed")


class _RichSink:
    """The ingest pipeline's ProgressSink drawn as rich bars, one task per stage."""

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
        f"{s['chunks']} chunks written ({s['chunks_embedded']} embedded"
        + (f" on {s['workers']} Ray workers" if s.get("workers") else "")
        + f") in {s['seconds']:.1f} s "
        f"→ {index_dir}" + (f" (version {s['index_version']})" if s["index_version"] else "")
    )
    for err in s["errors"]:
        out.print(f"  [red]failed[/] {err['error']}")
