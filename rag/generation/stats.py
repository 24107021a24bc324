"""Token counts and timings of one generation: what every answer reports as its usage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationStats:
    """Timing of the last call, for efficiency metrics (Generation itself carries no timings)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    prefill_s: float = 0.0  # prompt processing up to the first generated token
    decode_s: float = 0.0  # the remaining generated tokens

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def completion_tokens_per_s(self) -> float:
        rest = self.completion_tokens - 1
        return rest / self.decode_s if self.decode_s > 0 and rest > 0 else 0.0
