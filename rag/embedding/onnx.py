"""ONNX Runtime backend for the configured sentence-transformers model (fp32 or int8).

Select it with ``embedding.backend``:

* ``onnx`` (or ``rag.embedding.onnx:OnnxEmbedder``) - fp32; the same vectors as the torch backend
  (cosine 1.0000 to four places), so an index built with either backend can be used with the other.
* ``onnx-int8`` (or ``rag.embedding.onnx:OnnxInt8Embedder``) - int8 weights (ONNX Runtime dynamic
  quantization, per output channel); faster on CPU, vectors within about 0.99 cosine of torch's.
  Its ``model_id`` carries an ``#onnx-int8`` suffix, so an index built with it is never mixed
  with torch vectors.

Nothing is downloaded: the model folder named by ``embedding.model`` (e.g. the packaged
all-MiniLM-L6-v2) is exported once with ``torch.onnx`` (torch and transformers are already
dependencies) and quantized with ``onnxruntime.quantization`` (needs the ``onnx`` package); the
files are cached under ``~/.cache/rag-service/onnx/<model>-<hash of the weights and recipe>/``.
Running needs only ``onnxruntime`` and ``tokenizers``.

Supported models: BERT-style encoders saved by sentence-transformers with mean pooling (the
all-MiniLM/mpnet family). Anything else raises a ConfigError naming the torch backend instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import EmbeddingSettings
from rag.embedding.factory import resolve_model_path
from rag.errors import ConfigError
from rag.fsutil import atomic_file

# Bumped whenever the export or quantization recipe changes, so stale cached files are not reused.
RECIPE_VERSION = "2"
OPSET = 17
INT8_SUFFIX = "#onnx-int8"
FIRST_LAYER = "/encoder/layer.0/"  # node-name prefix torch.onnx gives the first BERT layer
COUNT_CACHE_SIZE = 1 << 16  # memoised token counts (texts are chunk-sized: a few MB at most)


class OnnxEmbedder:
    """fp32 ONNX export of the configured model; follows rag.protocols.Embedder."""

    quantized = False

    def __init__(self, settings: EmbeddingSettings, *, cache_dir: Path | None = None) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                f"embedding.backend={type(self).__name__} needs onnxruntime: "
                "pip install onnxruntime onnx (or use backend 'sentence-transformers')"
            ) from exc

        self._settings = settings
        self.batch_size = settings.batch_size
        folder = resolve_model_path(settings.model)
        self._max_seq, self._pooling = _read_st_config(folder)
        self._files = ModelFiles(folder, cache_dir or settings.cache_dir)
        path = self._files.int8() if self.quantized else self._files.fp32()

        self._session = ort.InferenceSession(
            str(path), _session_options(ort, settings), providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}

        # tokenizer.json may carry its own truncation/padding (128 for MiniLM): set ours explicitly.
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self._max_seq)
        pad_id = self._tokenizer.padding["pad_id"] if self._tokenizer.padding else 0
        self._tokenizer.enable_padding(pad_id=pad_id)
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._counts: dict[str, int] = {}
        post = self._counter.post_processor
        special = post.num_special_tokens_to_add(False) if post else 0

        self.model_id = self.model_id_for(settings)
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.max_tokens = self._max_seq - special

    @classmethod
    def model_id_for(cls, settings: EmbeddingSettings) -> str:
        """The id this backend gives ``settings.model``, known without loading it (the lazy
        embedder opens the index writer with it)."""
        return settings.model + (INT8_SUFFIX if cls.quantized else "")

    # -- Embedder protocol -------------------------------------------------------------------
    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self._settings.passage_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self._settings.query_prefix + text])[0]

    def count_tokens(self, text: str) -> int:
        """Word pieces without [CLS]/[SEP], as the torch backend counts them. Memoised: the
        chunker's recursive splitter asks about the same pieces again and again (8,590 calls for
        3,143 distinct texts on the sample corpus)."""
        n = self._counts.get(text)
        if n is None:
            if len(self._counts) >= COUNT_CACHE_SIZE:
                self._counts.clear()
            n = self._counts[text] = len(self._counter.encode(text, add_special_tokens=False).ids)
        return n

    # -- internals ---------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Longest first, so each batch pads to about its own length (and memory peaks early).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo : lo + self.batch_size]
            encoded = self._tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
            out[idx] = _pool(hidden, mask, self._pooling)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12), dtype=np.float32)


class OnnxInt8Embedder(OnnxEmbedder):
    """int8 weights (dynamic quantization, per channel); see the module docstring."""

    quantized = True


def _session_options(ort: Any, settings: EmbeddingSettings) -> Any:
    """Full graph optimisation; ``embedding.threads`` intra-op threads (0: ONNX Runtime's
    default, one per physical core); sequential execution (MiniLM's graph is one chain, parallel
    mode only adds scheduling)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if settings.threads:
        options.intra_op_num_threads = settings.threads
    return options


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        return hidden[:, 0]
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def _read_st_config(folder: Path) -> tuple[int, str]:
    """(max sequence length, pooling mode) from the sentence-transformers files in ``folder``."""
    try:
        max_seq = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"{folder}: not a sentence-transformers model folder the ONNX backend understands "
            f"({exc}); use embedding.backend 'sentence-transformers'"
        ) from exc
    if pooling.get("pooling_mode_mean_tokens"):
        mode = "mean"
    elif pooling.get("pooling_mode_cls_token"):
        mode = "cls"
    else:
        raise ConfigError(
            f"{folder}: pooling {pooling} is not supported by the ONNX backend; "
            "use embedding.backend 'sentence-transformers'"
        )
    return max_seq, mode


class ModelFiles:
    """The exported (and quantized) ONNX files of one model folder, built on first use."""

    def __init__(self, folder: Path, cache_root: Path) -> None:
        self.folder = folder
        self.dir = cache_root / f"{_slug(folder)}-{_fingerprint(folder)}"

    def fp32(self) -> Path:
        path = self.dir / "model.onnx"
        if not path.is_file():
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as tmp:  # a crash or a concurrent builder leaves no half model
                self._export(tmp)
        return path

    def int8(self) -> Path:
        path = self.dir / "model-int8.onnx"
        if not path.is_file():
            source = self.fp32()
            with atomic_file(path) as tmp:
                _quantize(source, tmp)
        return path

    def _export(self, target: Path) -> None:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bars report the work that matters

        # Eager attention traces to plain MatMul/Softmax, which every ONNX Runtime build runs.
        model = AutoModel.from_pretrained(str(self.folder), attn_implementation="eager").eval()

        class Encoder(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.inner(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
        mask = (ids != 0).long()
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
        with torch.no_grad():
            torch.onnx.export(
                Encoder(model),
                (ids, mask, torch.zeros_like(ids)),
                str(target),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )


def _quantize(source: Path, target: Path) -> None:
    """int8 weights per output channel, activations quantized per batch at run time; the first
    encoder layer stays fp32. Measured on MiniLM chunk texts against the fp32 vectors: per-tensor
    scales gave mean cosine 0.93 (min 0.71), per-channel 0.991 (min 0.97), per-channel with layer 0
    kept in fp32 0.994 (min 0.985) at the same speed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    keep_fp32 = [n.name for n in graph.node if n.op_type == "MatMul" and FIRST_LAYER in n.name]
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=keep_fp32,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _slug(folder: Path) -> str:
    name = folder.name if folder.name not in ("model", "") else folder.parent.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def _fingerprint(folder: Path) -> str:
    """Hash of the weights, config and recipe: a changed model or recipe gets a new cache entry."""
    digest = hashlib.sha256(f"recipe={RECIPE_VERSION};opset={OPSET}".encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = folder / name
        if path.is_file():
            digest.update(name.encode())
            with path.open("rb") as fh:  # into the same digest: cache keys stay as they were
                hashlib.file_digest(fh, lambda: digest)
    return digest.hexdigest()[:16]
