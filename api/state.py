"""What the app holds for its lifetime: the pipeline, and the generator loaded in the background.

The default generator takes about a minute to load, so the server starts answering /healthz and
/v1/search at once and /v1/query as soon as the model is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from api.gate import GenerationGate
from rag.components import build_generator, build_pipeline
from rag.config import Settings
from rag.pipeline import Pipeline
from rag.protocols import HealthChecked

log = logging.getLogger("rag.api")


@dataclass
class AppState:
    settings: Settings
    pipeline: Pipeline
    gate: GenerationGate
    generator_status: str = "loading"
    _thread: threading.Thread | None = field(default=None, repr=False)
    _checked: tuple[float, str | None] = (float("-inf"), None)  # (when, problem) of the last check

    @classmethod
    def start(cls, settings: Settings) -> AppState:
        server = settings.server
        gate = GenerationGate(server.max_waiting_questions, server.typical_answer_s)
        state = cls(settings, build_pipeline(settings), gate)
        state._thread = threading.Thread(target=state._load_generator, name="generator-load", daemon=True)
        state._thread.start()
        return state

    def _load_generator(self) -> None:
        try:
            generator = build_generator(self.settings)
            self.pipeline.generator = generator
            self.generator_status = "ready"
            log.info("generator ready: %s", getattr(generator, "name", type(generator).__name__))
        except Exception as exc:  # reported by /healthz and /v1/query, not fatal to search
            log.exception("generator failed to load")
            self.generator_status = f"error: {exc}"

    def generator_health(self) -> str:
        """`loading`, `ready`, `error: ...`, or `unreachable: ...` for a remote generator that does
        not answer its cheap check (re-checked at most every ``server.generator_check_s``)."""
        generator = self.pipeline.generator
        if self.generator_status != "ready" or not isinstance(generator, HealthChecked):
            return self.generator_status
        when, problem = self._checked
        if time.monotonic() - when >= self.settings.server.generator_check_s:
            problem = generator.health_problem()
            self._checked = (time.monotonic(), problem)
        return f"unreachable: {problem}" if problem else "ready"
