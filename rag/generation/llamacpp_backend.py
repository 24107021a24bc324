"""Local generator: the GGUF chat model run by llama.cpp (llama-cpp-python), quantized, on CPU.

Why this is the default: llama.cpp runs the 4-bit weights as they are (about 1.1 GB mapped, not
the 7+ GB that transformers' fp32 dequantization needs), with CPU kernels for them; on this
project's 2-core machine it answers several times faster than the transformers backend
(docs/benchmarks.md has the side-by-side numbers and the command).

Two llama.cpp features matter for RAG answers and are used here:

* **Prefix reuse.** ``Llama`` keeps the KV cache of the last prompt and, for the next one, skips
  the longest common token prefix. Every prompt starts with the same system message, so its
  tokens are computed once per process (``warm_up`` does it at load time).
* **Prompt-lookup decoding** (``generator.prompt_lookup``): draft tokens are copied from n-grams of
  the prompt and verified by the model in one batch. Answers over documents copy a lot of their
  wording, so several tokens are often accepted per step; greedy output is unchanged, because
  every drafted token is checked against the model's own choice.

The wheel has no binary on the package index: ``scripts/setup.sh`` builds it once (about 15
minutes on 2 cores) into ``~/.cache/rag-service/wheels`` and later installs reuse it.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from rag.config import GeneratorSettings
from rag.errors import GenerationError
from rag.generation.common import NO_WORDS, YES_WORDS, truncate_at_stop
from rag.generation.models import resolve_gguf
from rag.protocols import Generation, GenerationParams, GenerationStats, Message


class LlamaCppGenerator:
    """Generator + YesNoScorer over llama.cpp; one model call at a time (it uses every core)."""

    def __init__(self, settings: GeneratorSettings) -> None:
        self.settings = settings
        self.name = f"llama.cpp:{settings.model}"
        self.last_stats = GenerationStats()
        self._lock = threading.Lock()
        self._llm: Any = None
        self._yes_ids: list[int] = []
        self._no_ids: list[int] = []

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Map the model once (seconds: the file is used as it is, not converted)."""
        with self._lock:
            if self._llm is not None:
                return
            try:
                from llama_cpp import Llama
                from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
            except ImportError as exc:
                raise GenerationError(
                    "generator.backend=llama.cpp needs llama-cpp-python; run `bash scripts/setup.sh` "
                    "(it builds the wheel once) or set generator.backend to transformers"
                ) from exc
            path = resolve_gguf(self.settings.model, self.settings.cache_dir)
            s = self.settings
            draft = (
                LlamaPromptLookupDecoding(
                    max_ngram_size=s.prompt_lookup_ngram, num_pred_tokens=s.prompt_lookup_tokens
                )
                if s.prompt_lookup
                else None
            )
            try:
                self._llm = Llama(
                    model_path=str(path),
                    n_ctx=s.context_window,
                    n_batch=s.batch_tokens,
                    n_threads=s.threads or os.cpu_count(),
                    draft_model=draft,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise GenerationError(f"llama.cpp cannot load {path}: {exc}") from exc
            self._yes_ids = self._single_token_ids(YES_WORDS)
            self._no_ids = self._single_token_ids(NO_WORDS)

    def warm_up(self, system_prompt: str) -> None:
        """Compute the fixed system prompt's KV state now, so the first question reuses it."""
        self.load()
        with self._lock:
            tokens = self._tokens([{"role": "system", "content": system_prompt}], generation_prompt=False)
            self._llm.reset()
            self._llm.eval(tokens)

    # ------------------------------------------------------------------ generation
    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        pieces = list(self.stream(messages, params))
        stats = self.last_stats
        finish = "length" if stats.completion_tokens >= params.max_tokens else "stop"
        return Generation("".join(pieces), stats.prompt_tokens, stats.completion_tokens, finish)

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        """Yield text as it is decoded. Closing the iterator stops generation at the next token."""
        self.load()
        with self._lock:
            tokens = self._tokens(messages)
            if len(tokens) + params.max_tokens > self._llm.n_ctx():
                raise GenerationError(
                    f"the prompt is {len(tokens)} tokens; with max_tokens={params.max_tokens} it exceeds "
                    f"generator.context_window={self._llm.n_ctx()}; lower the context budget or raise it"
                )
            yield from self._decode(tokens, params)

    def _decode(self, tokens: list[int], params: GenerationParams) -> Iterator[str]:
        llm = self._llm
        started = time.perf_counter()
        first = 0.0
        produced: list[int] = []
        text = ""
        sent = 0
        stopped = False
        hold = max((len(s) for s in params.stop), default=1) - 1
        eos = {llm.token_eos(), *self._end_of_turn_ids()}
        generator = llm.generate(
            tokens,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=0.0,
            repeat_penalty=params.repetition_penalty,
            # reset=True (the default) keeps the KV state of the longest prefix this prompt shares
            # with the previous one (the system prompt) and recomputes only the rest.
        )
        if params.seed is not None:
            llm.set_seed(params.seed)
        try:
            for token in generator:
                if not first:
                    first = time.perf_counter()
                if token in eos:
                    break
                produced.append(token)
                text = llm.detokenize(produced).decode("utf-8", errors="ignore")
                kept, stopped = truncate_at_stop(text, params.stop)
                if stopped:
                    if len(kept) > sent:
                        yield text[sent : len(kept)]
                    break
                safe = len(text) - hold
                if safe > sent:
                    yield text[sent:safe]
                    sent = safe
                if len(produced) >= params.max_tokens:
                    break
            if not stopped and len(text) > sent:
                yield text[sent:]
        finally:
            with contextlib.suppress(Exception):
                generator.close()
            end = time.perf_counter()
            first = first or end
            self.last_stats = GenerationStats(len(tokens), len(produced), first - started, end - first)

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=False))

    # ------------------------------------------------------------------ yes/no scoring
    def yes_probability(self, messages: list[Message]) -> float:
        """P(yes) / (P(yes) + P(no)) for the first answer token, from one forward pass."""
        self.load()
        import llama_cpp

        if not self._yes_ids or not self._no_ids:
            raise GenerationError(f"{self.name}: the tokenizer has no single-token 'yes'/'no'.")
        with self._lock:
            tokens = self._tokens(messages)
            llm = self._llm
            _keep_common_prefix(llm, tokens)
            llm.eval(tokens[llm.n_tokens :])
            logits = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            yes = _logsumexp([logits[i] for i in self._yes_ids])
            no = _logsumexp([logits[i] for i in self._no_ids])
        return 1.0 / (1.0 + math.exp(no - yes))

    # ------------------------------------------------------------------ helpers
    def _tokens(self, messages: list[Message], generation_prompt: bool = True) -> list[int]:
        """ChatML (the Qwen template) rendered by hand: the prompt's token prefix then stays the
        same from one question to the next, which prefix reuse needs."""
        parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
        if generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return self._llm.tokenize("".join(parts).encode(), add_bos=False, special=True)

    def _end_of_turn_ids(self) -> list[int]:
        ids = []
        for text in ("<|im_end|>", "<|endoftext|>"):
            found = self._llm.tokenize(text.encode(), add_bos=False, special=True)
            if len(found) == 1:
                ids.append(found[0])
        return ids

    def _single_token_ids(self, words: tuple[str, ...]) -> list[int]:
        ids = [self._llm.tokenize(w.encode(), add_bos=False, special=False) for w in words]
        return list(dict.fromkeys(i[0] for i in ids if len(i) == 1))


def _keep_common_prefix(llm: Any, tokens: list[int]) -> None:
    """Drop the cached KV state after the longest prefix ``tokens`` shares with it."""
    cached = llm.n_tokens
    same = 0
    limit = min(cached, len(tokens) - 1)  # always evaluate at least the last token
    while same < limit and llm.input_ids[same] == tokens[same]:
        same += 1
    llm.n_tokens = same


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
