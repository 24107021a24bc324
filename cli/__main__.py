"""``python -m cli``: the same as the ``rag`` script (tests start the server this way)."""

from cli.main import app

app(prog_name="rag")
