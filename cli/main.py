"""The `rag` command line: ingest documents, ask and search them, serve the HTTP API, evaluate.

Every option can also be set in configs/*.yaml or a RAG_* environment variable; a flag wins.
Errors print one line that says what is wrong and how to fix it, and exit with status 1.
"""

from __future__ import annotations

import typer

from cli import compact, index, keys, query, serve
from cli import eval as eval_cmd

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

# Registration order is the order `rag --help` lists the commands in.
app.command()(index.ingest)
app.command()(index.delete)
app.command()(query.search)
app.command()(query.ask)
app.command()(index.documents)
app.command()(index.info)
app.command()(compact.compact)
app.command()(serve.serve)
app.add_typer(eval_cmd.app, name="eval")
app.add_typer(keys.app, name="keys")

if __name__ == "__main__":
    app()
