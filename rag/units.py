"""Byte sizes as people read them. Every size limit in the settings is in MiB (``*_mb`` fields are
multiplied by 1024 * 1024), so every message about a size says MiB too: a limit of 50 reads
"50 MiB", never "52.4 MB"."""

from __future__ import annotations

MIB = 1024 * 1024


def mib_to_bytes(mib: float) -> int:
    """A ``*_mb`` setting in bytes."""
    return int(mib * MIB)


def format_mib(n_bytes: int) -> str:
    """``52428800`` -> ``"50 MiB"``; ``1536`` -> ``"0.00146 MiB"`` (three significant digits)."""
    return f"{n_bytes / MIB:.3g} MiB"
