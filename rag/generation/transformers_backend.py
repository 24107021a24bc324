"""Local generator: a GGUF chat model run by transformers on CPU.

transformers dequantizes GGUF to fp32 and needs no compiler, so it works wherever torch does
(llama-cpp-python is faster but has to be compiled). The model is loaded once,
lazily, because loading costs about a minute and 7 GB and many commands never generate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from rag.config import GeneratorSettings
from rag.errors import ConfigError, GenerationError
from rag.generation.common import NO_WORDS, YES_WORDS, truncate_at_stop
from rag.generation.models import resolve_gguf
from rag.protocols import Generation, GenerationParams, GenerationStats, Message

# ChatML ends each turn with <|im_end|>; stopping on it too keeps a model whose GGUF names another
# EOS token from running on into a new turn.
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>")
_STREAM_QUEUE_TIMEOUT_S = 600.0  # a stalled generation thread must not hang the consumer forever


class TransformersGenerator:
    """Generator + YesNoScorer over a transformers causal LM (GGUF key/path or HF folder)."""

    def __init__(self, settings: GeneratorSettings) -> None:
        self.settings = settings
        self.name = f"transformers:{settings.model}"
        self.last_stats = GenerationStats()
        self._lock = threading.Lock()  # one model call at a time; torch already uses every core
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos_ids: list[int] = []
        self._yes_ids: list[int] = []
        self._no_ids: list[int] = []

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load tokenizer and model once; later calls return at once."""
        with self._lock:
            if self._model is not None:
                return
            if self.settings.threads > 0:
                torch.set_num_threads(self.settings.threads)
            folder, kwargs = self._source()
            try:
                tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
            except (OSError, ValueError, ImportError) as exc:
                raise GenerationError(f"Cannot load generator model from {folder} ({kwargs}): {exc}") from exc
            model.eval()
            self._tokenizer = tokenizer
            self._eos_ids = _eos_ids(model, tokenizer)
            self._yes_ids = _single_token_ids(tokenizer, YES_WORDS)
            self._no_ids = _single_token_ids(tokenizer, NO_WORDS)
            self._model = model

    def _source(self) -> tuple[Path, dict[str, str]]:
        """A HF model folder loads as-is; anything else must resolve to a GGUF file."""
        folder = Path(self.settings.model).expanduser()
        if folder.is_dir():
            if not (folder / "config.json").is_file():
                raise ConfigError(f"generator.model={folder} is a folder without config.json.")
            return folder, {}
        gguf = resolve_gguf(self.settings.model, self.settings.cache_dir)
        return gguf.parent, {"gguf_file": gguf.name}

    # ------------------------------------------------------------------ generation
    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        """Complete the chat; stop strings both end generation early and are cut from the text."""
        self.load()
        input_ids = self._encode(messages)
        timer = _StepTimer()
        kwargs = self._generate_kwargs(params, extra_criteria=[timer])
        with self._lock, torch.inference_mode():
            timer.start()
            output = self._model.generate(input_ids=input_ids, **kwargs)
            timer.finish()
        new_ids = output[0, input_ids.shape[1] :].tolist()
        text = self._tokenizer.decode(new_ids, skip_special_tokens=True)
        text, hit_stop = truncate_at_stop(text, params.stop)
        finish = self._finish_reason(new_ids, params.max_tokens, hit_stop)
        self.last_stats = timer.stats(input_ids.shape[1], len(new_ids))
        return Generation(text, int(input_ids.shape[1]), len(new_ids), finish)

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        """Yield text as it is produced; generation runs in a thread and stops if we stop reading."""
        self.load()
        input_ids = self._encode(messages)
        streamer = TextIteratorStreamer(
            self._tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=_STREAM_QUEUE_TIMEOUT_S
        )
        cancel = threading.Event()
        timer = _StepTimer()
        kwargs = self._generate_kwargs(params, extra_criteria=[_CancelCriteria(cancel), timer])
        errors: list[BaseException] = []
        worker = threading.Thread(
            target=self._stream_worker, args=(input_ids, kwargs, streamer, errors), daemon=True
        )
        timer.start()
        worker.start()
        try:
            yield from _StopFilter(params.stop).filter(streamer)
        finally:
            # The consumer is gone or a stop string was seen: stop at the next token and wait for
            # the model to be free, so a closed stream never leaves a generation running.
            cancel.set()
            worker.join()
            timer.finish()
            self.last_stats = timer.stats(int(input_ids.shape[1]), timer.steps)
        if errors:
            raise GenerationError(f"Generation failed while streaming: {errors[0]}") from errors[0]

    def _stream_worker(
        self, input_ids: Any, kwargs: dict[str, Any], streamer: Any, errors: list[BaseException]
    ) -> None:
        try:
            with self._lock, torch.inference_mode():
                self._model.generate(input_ids=input_ids, streamer=streamer, **kwargs)
        except BaseException as exc:  # surfaced to the consumer after the stream ends
            errors.append(exc)
            streamer.end()

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._tokenizer(text, add_special_tokens=False).input_ids)

    # ------------------------------------------------------------------ yes/no scoring
    def yes_probability(self, messages: list[Message]) -> float:
        """P(yes) / (P(yes) + P(no)) for the first answer token: a verdict without JSON parsing."""
        self.load()
        if not self._yes_ids or not self._no_ids:
            raise GenerationError(f"{self.name}: the tokenizer has no single-token 'yes'/'no'.")
        input_ids = self._encode(messages)
        with self._lock, torch.inference_mode():
            logits = self._model(input_ids=input_ids).logits[0, -1].float()
        yes = torch.logsumexp(logits[self._yes_ids], dim=0)
        no = torch.logsumexp(logits[self._no_ids], dim=0)
        return float(torch.sigmoid(yes - no))  # = e^yes / (e^yes + e^no), numerically stable

    # ------------------------------------------------------------------ helpers
    def _encode(self, messages: list[Message]) -> Any:
        """Render with the model's own chat template, then tokenize without extra special tokens."""
        prompt = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=False
        )
        return self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids

    def _generate_kwargs(
        self, params: GenerationParams, extra_criteria: list[StoppingCriteria]
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "eos_token_id": self._eos_ids,
            "pad_token_id": _pad_id(self._tokenizer, self._eos_ids),
            "stopping_criteria": StoppingCriteriaList(extra_criteria),
        }
        if params.temperature > 0:
            kwargs.update(
                do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k
            )
            if params.seed is not None:
                torch.manual_seed(params.seed)
        else:
            kwargs["do_sample"] = False
        if params.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = params.repetition_penalty
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self._tokenizer)
        return kwargs

    def _finish_reason(self, new_ids: list[int], max_tokens: int, hit_stop: bool) -> str:
        if hit_stop or (new_ids and new_ids[-1] in self._eos_ids):
            return "stop"
        return "length" if len(new_ids) >= max_tokens else "stop"


class _StopFilter:
    """Streams text while holding back a tail that could be the start of a stop string."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self.stop = tuple(s for s in stop if s)
        self.hold = max((len(s) for s in self.stop), default=1) - 1

    def filter(self, pieces: Iterator[str]) -> Iterator[str]:
        if not self.stop:
            yield from (p for p in pieces if p)
            return
        buffer = ""
        for piece in pieces:
            buffer += piece
            cut, hit = truncate_at_stop(buffer, self.stop)
            if hit:
                if cut:
                    yield cut
                return
            safe = len(buffer) - self.hold
            if safe > 0:
                yield buffer[:safe]
                buffer = buffer[safe:]
        if buffer:
            yield buffer


class _CancelCriteria(StoppingCriteria):
    """Stopping criterion that ends generation when the stream's consumer goes away."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class _StepTimer(StoppingCriteria):
    """Stopping criterion that never stops; it timestamps the first generated token so prompt
    (prefill) and generation speed can be reported separately from one call."""

    def __init__(self) -> None:
        self.t0 = self.t_first = self.t_end = 0.0
        self.steps = 0  # one call per generated token

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def finish(self) -> None:
        self.t_end = time.perf_counter()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        if not self.t_first:
            self.t_first = time.perf_counter()
        self.steps += 1
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool)

    def stats(self, prompt_tokens: int, completion_tokens: int) -> GenerationStats:
        first = self.t_first or self.t_end
        return GenerationStats(prompt_tokens, completion_tokens, first - self.t0, self.t_end - first)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Union of the model's EOS ids, the tokenizer's, and ChatML's end-of-turn tokens."""
    configured = model.generation_config.eos_token_id
    ids = list(configured) if isinstance(configured, list) else [configured]
    ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[t] for t in _END_OF_TURN_TOKENS if t in vocab)
    return list(dict.fromkeys(i for i in ids if i is not None))


def _pad_id(tokenizer: Any, eos_ids: list[int]) -> int | None:
    """Batch size is 1 so padding never happens; setting it only silences transformers' warning."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return eos_ids[0] if eos_ids else None


def _single_token_ids(tokenizer: Any, words: tuple[str, ...]) -> list[int]:
    """Token ids of the words that are one token; multi-token spellings cannot be read in one step."""
    ids = [tokenizer.encode(w, add_special_tokens=False) for w in words]
    return list(dict.fromkeys(i[0] for i in ids if len(i) == 1))
