"""The `rag` command line, kept outside the core library so that ``rag/`` imports no front end.

One module per command group: ``index`` (ingest, delete, documents, info), ``query`` (ask, search),
``serve``, ``eval``; ``console`` holds what they share (error translation, consoles, progress bars)
and ``main`` assembles the typer app.
"""
