"""What every command shares: where output goes, how errors end a command, the progress bar.

Both ``rag`` and ``rag eval`` end on a library error the same way: one red line on stderr that
names the bad value and the fix, then exit status 1 (no traceback: the message is the help).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeElapsedColumn

from rag.config import Settings, load_settings
from rag.errors import RagError

# Progress, status and errors go to stderr so that stdout stays machine-readable (--json).
console = Console(stderr=True)
out = Console()
T = TypeVar("T")


def run(action: Callable[[], T]) -> T:
    """Run ``action``; a RagError (ConfigError included) becomes one red line and exit status 1."""
    try:
        return action()
    except RagError as exc:
        fail(str(exc))


def fail(message: str) -> NoReturn:
    """Print ``message`` as the command's one error line and exit with status 1.

    Escaped, so a path or value with [brackets] prints as given; not wrapped, so the line stays
    one line for grep and for the log of a CI job.
    """
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def settings(config: Path | None, collection: str | None = None, **overrides: Any) -> Settings:
    """Settings from ``--config`` (passed as an argument: the environment is left alone) + flags;
    with ``collection``, index_dir is that collection's directory (rag.collections)."""
    from rag.collections import settings_for

    cfg = run(lambda: load_settings(config_file=config, **overrides))
    return run(lambda: settings_for(cfg, collection)) if collection else cfg


def progress(label: ProgressColumn, *extra: ProgressColumn, remaining: bool = False) -> Progress:
    """A progress bar on stderr: ``label``, bar, done/total, ``extra`` columns, elapsed (and ETA).

    Not transient, so the finished bars stay on screen as a record of where the time went.
    """
    columns = [label, BarColumn(), MofNCompleteColumn(), *extra, TimeElapsedColumn()]
    if remaining:
        from rich.progress import TimeRemainingColumn

        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, transient=False)
