"""Resolve the configured embedding model and build the backend named in config."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from rag import registry
from rag.config import EmbeddingSettings
from rag.errors import ConfigError
from rag.protocols import Embedder

PACKAGE_PREFIX = "pkg:"


def resolve_model_path(model: str) -> Path:
    """Turn ``pkg:<distribution>`` (a model shipped in a PyPI package) or a path into a folder."""
    if model.startswith(PACKAGE_PREFIX):
        module_name = model[len(PACKAGE_PREFIX) :].replace("-", "_")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"embedding.model={model!r}: package {module_name!r} is not installed; "
                f"install it with `pip install {model[len(PACKAGE_PREFIX) :]}`"
            ) from exc
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise ConfigError(f"embedding.model={model!r}: {module_name} has no get_model_path()")
        return Path(getter())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding.model={model!r} is neither 'pkg:<package>' nor an existing model folder; "
            "no model hub is reachable, so the model must be local"
        )
    return path


def make_embedder(settings: EmbeddingSettings) -> Embedder:
    """Build the configured embedder (rag.registry kind ``embedder``); the model loads here, once.

    ``onnx`` and ``onnx-int8`` need onnxruntime + onnx (the dev/bench extras).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub at run time
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars report the work that matters
    return registry.build("embedder", settings.backend, settings, setting="embedding.backend")
