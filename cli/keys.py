"""`rag keys`: create, list and revoke the server's scoped API keys (api/keys.py).

The keys file is found the way the server finds it (server.keys_file, else <index_dir>/keys.json,
from --index, --config and RAG_* alike), and a running server re-reads it on change: a key created
or revoked here works or stops working on its next request, with no restart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from api.keys import ALL, KeyFile, KeyRecord, format_time, keys_path, parse_time, utc_now
from cli.console import console, fail, out, run, settings
from cli.options import ConfigOpt, IndexOpt, JsonOpt

T = TypeVar("T")

app = typer.Typer(
    help=(
        "Scoped API keys for `rag serve`: each key reads, writes or administers some collections.\n\n"
        "Once any key exists, every request needs one (`Authorization: Bearer <token>`); a running "
        "server sees keys created or revoked here on its next request. Only hashes are stored, so "
        "a token is shown once, when it is created.\n\n"
        "Typical use: `rag keys create --collection docs --scope read --name ci-bot --expires-in 30d`, "
        "`rag keys list`, `rag keys revoke k_3f9a1c2b`."
    ),
    no_args_is_help=True,
)

# --expires-in 30d: a number and one of these units.
DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
# The table's times, UTC: created to the day, expires to the minute (a key may last hours).
TABLE_TIME_EXAMPLE = "2030-01-31 12:00"
TABLE_DATE_EXAMPLE = "2030-01-31"
STATUS_STYLE = {"active": "green", "expired": "yellow", "revoked": "red"}


class ScopeChoice(StrEnum):
    """api.keys.SCOPES as --scope choices: admin implies write, write implies read."""

    read = "read"
    write = "write"
    admin = "admin"


def create(
    collection: Annotated[
        list[str] | None,
        typer.Option(
            "--collection",
            "-C",
            help="Collection the --scope applies to (repeatable); '*' means every collection.",
        ),
    ] = None,
    scope: Annotated[
        list[ScopeChoice] | None,
        typer.Option(
            "--scope", "-s", help="read, write or admin (repeatable; admin implies write implies read)."
        ),
    ] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant", "-g", help="COLLECTION:SCOPE, e.g. docs:read (repeatable), for mixed grants."
        ),
    ] = None,
    name: Annotated[
        str,
        typer.Option("--name", "-n", help="Label shown by `rag keys list` and in logs (default: the id)."),
    ] = "",
    expires_in: Annotated[
        str | None,
        typer.Option("--expires-in", help="Lifetime such as 90m, 12h, 30d or 2w (default: until revoked)."),
    ] = None,
    index: IndexOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print its token, once: only its hash is stored.

    Grants are --collection x --scope (every pair), plus each --grant, e.g.
    `--collection docs --collection wiki --scope read` or `--grant docs:write --grant '*:read'`.
    The token goes to stdout alone, so `TOKEN=$(rag keys create ...)` captures it.
    """
    grants = _grants(collection or [], [s.value for s in scope or []], grant or [])
    expires_at = _expiry(expires_in) if expires_in else None
    keyfile = _keyfile(index, config)
    record, token = _do(lambda: keyfile.create(name, grants, expires_at))
    if as_json:
        out.print_json(json.dumps({**record.public(), "token": token}))
    else:
        out.print(token, highlight=False, soft_wrap=True)
    console.print(
        f"created key [bold]{record.id}[/] ({escape(record.name)}): {', '.join(record.grants)}, "
        f"expires {record.expires_at or 'never'}; in {keyfile.path}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "[yellow]The token above cannot be shown again[/]: store it now (a lost token is revoked "
        "and replaced). Clients send it as `Authorization: Bearer <token>`.",
        highlight=False,
    )


def list_keys(index: IndexOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the keys in the keys file; never their hashes or tokens.

    Columns: id, name, grants, created, expires (UTC) and status: active, expired or revoked.
    """
    cfg = settings(config, index_dir=index)
    keyfile = KeyFile(keys_path(cfg))
    records = _do(keyfile.records)
    if as_json:
        out.print_json(json.dumps([r.public() for r in records]))
    elif records:
        out.print(_table(records))
    else:
        console.print(
            f"no keys in {keyfile.path}; create one with `rag keys create --collection docs --scope read`"
        )
    if cfg.server.api_keys is not None or cfg.server.admin_api_key is not None:
        console.print(
            "[dim]keys set in the environment (RAG_SERVER__API_KEYS, RAG_SERVER__ADMIN_API_KEY) also "
            "work and are not listed[/]"
        )


def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, e.g. k_3f9a1c2b (see `rag keys list`).")],
    index: IndexOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a key: a running server refuses it from its next request.

    The key stays listed (as revoked), and the server stays locked to requests without a key.
    """
    keyfile = _keyfile(index, config)
    record = _do(lambda: keyfile.revoke(key_id))
    console.print(f"revoked key [bold]{record.id}[/] ({escape(record.name)}) at {record.revoked_at}")


app.command()(create)
app.command("list")(list_keys)
app.command()(revoke)


def _keyfile(index: Path | None, config: Path | None) -> KeyFile:
    return KeyFile(keys_path(settings(config, index_dir=index)))


def _do(action: Callable[[], T]) -> T:
    """``action`` with its bad-input and file errors as the command's one error line."""
    try:
        return run(action)
    except (ValueError, OSError) as exc:
        fail(str(exc))


def _grants(collections: list[str], scopes: list[str], grants: list[str]) -> list[str]:
    if collections and not scopes:
        fail("--collection needs --scope read, write or admin (the scope the key has on it)")
    if scopes and not collections:
        fail(f"--scope needs --collection NAME (or --collection '{ALL}' for every collection)")
    combined = [f"{c}:{s}" for c in collections for s in scopes] + grants
    if not combined:
        fail("give the key something to do: --collection docs --scope read, or --grant docs:read")
    return combined


def _expiry(text: str) -> datetime:
    match = DURATION.match(text)
    if not match or int(match[1]) == 0:
        units = ", ".join(f"{u} ({word})" for u, word in DURATION_UNITS.items())
        fail(f"--expires-in {text!r}: write a positive number and a unit, e.g. 30d; units: {units}")
    return utc_now() + timedelta(**{DURATION_UNITS[match[2]]: int(match[1])})


def _table(records: list[KeyRecord]) -> Table:
    """Ids, times and status never wrap (they are copied and compared); names and grants fold,
    one grant a line, so nothing is cut off in a narrow terminal."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("grants", overflow="fold")
    for heading in ("created", "expires", "status"):
        table.add_column(heading, no_wrap=True)
    for r in records:
        status = r.status()
        table.add_row(
            r.id,
            escape(r.name),
            "\n".join(r.grants),
            _short_time(r.created_at)[: len(TABLE_DATE_EXAMPLE)],
            _short_time(r.expires_at) if r.expires_at else "never",
            f"[{STATUS_STYLE[status]}]{status}[/]",
        )
    return table


def _short_time(iso: str) -> str:
    """``2030-01-31T12:00:00Z`` as ``2030-01-31 12:00``, for the table (--json has it whole)."""
    return format_time(parse_time(iso)).replace("T", " ")[: len(TABLE_TIME_EXAMPLE)]
