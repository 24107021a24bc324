"""Resolve the configured embedding model and build the backend named in config."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from rag import registry
from rag.config import EmbeddingSettings
from rag.errors import ConfigError
from rag.protocols import Embedder

PACKAGE_PREFIX = "pkg:"
# sentence-transformers module types whose output width is the transformer's hidden size.
SAME_WIDTH_MODULES = ("Transformer", "Pooling", "Normalize")
DENSE_MODULE = "Dense"


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
    return registry.build("embedder", settings.backend, settings, setting="embedding.backend")


def make_lazy_embedder(settings: EmbeddingSettings) -> Embedder:
    """The configured embedder, loaded only when something is embedded or counted (see
    rag.embedding.lazy); built at once when its identity cannot be known without loading it
    (a backend class without ``model_id_for``, or a model folder whose width is not readable)."""
    from rag.embedding.lazy import LazyEmbedder

    backend = registry.resolve("embedder", settings.backend, setting="embedding.backend")
    model_id_for = getattr(backend, "model_id_for", None)
    dim = model_dim(resolve_model_path(settings.model)) if model_id_for else None
    if model_id_for is None or dim is None:
        return make_embedder(settings)
    return LazyEmbedder(settings, model_id_for(settings), dim, lambda: make_embedder(settings))


def model_dim(folder: Path) -> int | None:
    """The vector width a sentence-transformers folder produces, from its config files alone:
    the last Dense module's ``out_features``, else the transformer's ``hidden_size``; None when
    the files do not say (an unknown module type, a missing file)."""
    try:
        modules = _read_json(folder / "modules.json") if (folder / "modules.json").is_file() else []
        dim = int(_read_json(folder / "config.json")["hidden_size"])
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind == DENSE_MODULE:
                dim = int(_read_json(folder / module["path"] / "config.json")["out_features"])
            elif kind not in SAME_WIDTH_MODULES:
                return None
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return dim


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
