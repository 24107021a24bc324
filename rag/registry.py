"""One registry: config names -> the classes (or factories) that implement each component kind.

Targets are ``"package.module:Name"`` strings, imported only when chosen, so an OpenAI-only
deployment never imports torch and a FAISS-free toy store never imports FAISS. A setting may
also name a user's own class directly as ``"package.module:ClassName"``; either way the built
object is checked against the kind's Protocol (``isinstance`` with a runtime-checkable one), so
a wrong class fails at start-up with the setting, the value and the choices in the message.

Kinds, the setting that chooses each, and how it is built (see rag/components.py):

========== ======================= ==========================================
kind       setting                 built as
========== ======================= ==========================================
embedder   embedding.backend       ``cls(settings.embedding)``
store      index.store             ``cls(settings)``
retriever  retrieval.retriever     ``cls(settings, embedder, store)``
reranker   retrieval.reranker      ``cls(settings, generator)`` (generator may be None)
generator  generator.backend       ``cls(settings.generator)``
judge      grounding.judge         ``cls(settings.grounding, embedder, generator)``
loader     (by file suffix)        registered by ``ingest.loaders``
========== ======================= ==========================================

``rag`` imports nothing from ``ingest``: the loader kind starts empty and the ingest package
registers its loaders (``register("loader", ".pdf", "ingest.loaders.pdf:PdfLoader")``).
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from rag.errors import ConfigError

_BUILTIN: dict[str, dict[str, str]] = {
    "embedder": {
        "onnx-int8": "rag.embedding.onnx:OnnxInt8Embedder",
        "onnx": "rag.embedding.onnx:OnnxEmbedder",
        "sentence-transformers": "rag.embedding.sentence_transformers:SentenceTransformerEmbedder",
    },
    "store": {
        "faiss": "rag.index.faiss_store:FaissSqliteStore",
        "sharded": "rag.index.sharded:ShardedStore",
    },
    "retriever": {
        "hybrid": "rag.retrieval.hybrid:HybridRetriever",
        "dense": "rag.retrieval.dense:DenseRetriever",
    },
    "reranker": {
        "generator": "rag.retrieval.rerank:GeneratorReranker",
        "cross-encoder": "rag.retrieval.rerank:CrossEncoderReranker",
    },
    "generator": {
        "llamacpp": "rag.generation.llamacpp_backend:LlamaCppGenerator",
        "transformers": "rag.generation.transformers_backend:TransformersGenerator",
        "openai": "rag.generation.openai_backend:OpenAIGenerator",
    },
    "judge": {
        "support": "rag.grounding.judges:support_judge",
        "llm": "rag.grounding.judges:llm_judge",
        "ensemble": "rag.grounding.judges:ensemble_judge",
    },
    "loader": {},
}
# The Protocol each kind's built object must satisfy, by name in rag.protocols (read lazily).
PROTOCOLS = {
    "embedder": "Embedder",
    "store": "VectorStore",
    "retriever": "Retriever",
    "reranker": "Reranker",
    "generator": "Generator",
    "judge": "SupportJudge",
    "loader": "Loader",
}
_entries: dict[str, dict[str, str]] = {kind: dict(names) for kind, names in _BUILTIN.items()}
_lock = threading.Lock()


def register(kind: str, name: str, target: str) -> None:
    """Make ``name`` choose ``target`` ("package.module:Name") for ``kind``; a later call for
    the same name replaces the earlier one (how a deployment overrides a built-in)."""
    _check_kind(kind)
    if ":" not in target:
        raise ValueError(
            f"register({kind!r}, {name!r}, {target!r}): the target must be 'package.module:Name'"
        )
    with _lock:
        _entries[kind][name] = target


def names(kind: str) -> list[str]:
    """The registered names of ``kind``, sorted (for error messages and --help)."""
    _check_kind(kind)
    with _lock:
        return sorted(_entries[kind])


def target(kind: str, name: str) -> str | None:
    """The "module:Name" that ``name`` is registered as, or None."""
    _check_kind(kind)
    with _lock:
        return _entries[kind].get(name)


def resolve(kind: str, value: str, *, setting: str) -> Any:
    """The class or factory that ``value`` (a registered name or "package.module:Name") means.

    ``setting`` is the config key that holds ``value``; every error names it, the value and
    the registered choices.
    """
    spec = target(kind, value)
    if spec is None:
        if ":" not in value:
            raise ConfigError(f"{setting}={value!r} is unknown; use one of {_choices(kind)}")
        spec = value
    return import_target(spec, setting=setting, value=value)


def import_target(spec: str, *, setting: str, value: str | None = None) -> Any:
    """Import "package.module:Name"; a failure is a ConfigError naming ``setting``."""
    shown = value if value is not None else spec
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{setting}={shown!r} is not 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{setting}={shown!r}: cannot import module {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{setting}={shown!r}: module {module_name!r} has no {attr!r}") from None


def build(kind: str, value: str, *args: Any, setting: str, **kwargs: Any) -> Any:
    """Resolve ``value``, call it with the kind's arguments and check the kind's Protocol."""
    factory = resolve(kind, value, setting=setting)
    built = factory(*args, **kwargs)
    check(kind, built, setting=setting, value=value)
    return built


def check(kind: str, obj: object, *, setting: str, value: str) -> None:
    """Raise ConfigError unless ``obj`` implements the kind's Protocol."""
    protocol = _protocol(kind)
    if protocol is not None and not isinstance(obj, protocol):
        missing = [m for m in _members(protocol) if not hasattr(obj, m)]
        raise ConfigError(
            f"{setting}={value!r} built a {type(obj).__name__}, which is not a {protocol.__name__} "
            f"(missing: {', '.join(missing) or 'see rag/protocols.py'}); use one of {_choices(kind)} "
            f"or a class implementing rag.protocols.{protocol.__name__}"
        )


def _protocol(kind: str) -> type | None:
    from rag import protocols

    return protocols.__dict__.get(PROTOCOLS[kind])


def _members(protocol: type) -> list[str]:
    attrs = getattr(protocol, "__protocol_attrs__", None)  # Python >= 3.12
    if attrs is None:
        from typing import _get_protocol_attrs  # type: ignore[attr-defined]

        attrs = _get_protocol_attrs(protocol)
    return sorted(attrs)


def _choices(kind: str) -> str:
    listed = ", ".join(repr(n) for n in names(kind)) or "(none registered)"
    return f"{listed} or a class of your own as 'package.module:ClassName'"


def _check_kind(kind: str) -> None:
    if kind not in _entries:
        raise ValueError(f"unknown component kind {kind!r}; kinds are {', '.join(sorted(_entries))}")
