"""Embedding backends. ``make_embedder`` picks one by the ``embedding.backend`` setting;
``make_lazy_embedder`` does the same but loads the model only when something is embedded."""

from rag.embedding.factory import make_embedder, make_lazy_embedder, resolve_model_path

__all__ = ["make_embedder", "make_lazy_embedder", "resolve_model_path"]
