"""What the local backends share, kept free of heavy imports (no torch, no llama.cpp)."""

from __future__ import annotations

# Single-token spellings of the LLM judge's two answers: P(yes) is read from their logits.
YES_WORDS = ("yes", "Yes", " yes", " Yes")
NO_WORDS = ("no", "No", " no", " No")


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut at the earliest stop string (OpenAI semantics: the stop string is not returned)."""
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)
