"""`rag serve`: the HTTP API under uvicorn."""

from __future__ import annotations

import logging
import logging.config
from typing import Annotated

import typer

from cli.console import run, settings
from cli.options import ConfigOpt, IndexOpt
from rag.config import Settings

log = logging.getLogger("rag.serve")


def serve(
    index: IndexOpt = None,
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve on a non-loopback --host with no API key configured (anyone who can reach "
            "the port reads every document; warned at every start). Without it such a start is "
            "refused: create a key with `rag keys create` instead.",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs). The generator loads in the background;
    /healthz reports when it is ready, and /v1/search works before that."""
    import uvicorn

    from api.app import create_app
    from api.observability import logging_config

    no_auth = True if insecure_no_auth else None  # None: the config's (or environment's) value
    overrides = {"server.host": host, "server.port": port, "server.insecure_no_auth": no_auth}
    cfg = settings(config, index_dir=index, **overrides)
    server = cfg.server
    # Configured before uvicorn does it again, so the exposure warning has the server's log format.
    logging.config.dictConfig(logging_config(server.log_format))
    warning = run(lambda: _exposure_warning(cfg))
    if warning:
        log.warning(warning)
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


def _exposure_warning(cfg: Settings) -> str | None:
    """api.exposure's verdict: ConfigError (the start is refused) for a non-loopback bind with no
    key, else the warning to log, if any."""
    from api.exposure import check_exposure
    from api.keys import KeyRing

    return check_exposure(cfg, keys_configured=KeyRing.from_settings(cfg).configured)
