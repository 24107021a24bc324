"""Embedding backends. ``make_embedder`` picks one by the ``embedding.backend`` setting."""

from rag.embedding.factory import make_embedder, resolve_model_path

__all__ = ["make_embedder", "resolve_model_path"]
