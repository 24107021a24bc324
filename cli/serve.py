"""`rag serve`: the HTTP API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.console import settings
from cli.options import ConfigOpt, IndexOpt


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
    from api.observability import logging_config

    cfg = settings(config, index_dir=index, **{"server.host": host, "server.port": port})
    server = cfg.server
    # After SIGTERM, requests still running after graceful_shutdown_s are cancelled (and their
    # worker threads told to stop, api/cancel.py) instead of being waited for indefinitely.
    # Logs: server.log_format, with the request id; the app writes the access lines itself.
    uvicorn.run(
        create_app(cfg),
        host=server.host,
        port=server.port,
        log_config=logging_config(server.log_format),
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=server.graceful_shutdown_s,
    )
