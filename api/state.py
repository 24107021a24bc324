"""What the app holds for its lifetime: the components, the pipeline over them, and the
generator, loaded in the background unless one was given.

The default generator takes about a minute to load, so the server starts answering /healthz and
/v1/search at once and /v1/query as soon as the model is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from api.collections import Collection, Collections
from api.gate import GenerationGate
from api.keys import KeyRing
from api.observability import ServiceMetrics
from api.ratelimit import RateLimiter
from rag.components import Components, build_components, build_generator
from rag.config import Settings
from rag.embedding import make_embedder
from rag.pipeline import Pipeline
from rag.protocols import Embedder, HealthChecked, VectorStore

log = logging.getLogger("rag.api")


@dataclass
class AppState:
    settings: Settings
    components: Components  # the shared ones (embedder, generator, judge) and the default collection's
    collections: Collections
    gate: GenerationGate
    keys: KeyRing
    limiter: RateLimiter
    generator_status: str = "loading"
    metrics: ServiceMetrics | None = field(default=None, repr=False)  # the app's; set by create_app
    _thread: threading.Thread | None = field(default=None, repr=False)
    _checked: tuple[float, str | None] = (float("-inf"), None)  # (when, problem) of the last check

    @classmethod
    def start(cls, settings: Settings, components: Components | None = None) -> AppState:
        """Use ``components`` when given (a generator among them is used as it is: none other is
        loaded); otherwise build them from ``settings``. Without a generator, the configured one
        loads in the background."""
        components = components or build_components(settings)
        server = settings.server
        gate = GenerationGate(server.max_waiting_questions, server.typical_answer_s, server.request_timeout_s)
        collections = Collections(settings, components, lambda: make_embedder(settings.embedding))
        keys = KeyRing.from_settings(settings)
        limiter = RateLimiter(server.rate_limit_per_s, server.rate_limit_burst)
        state = cls(settings, components, collections, gate, keys, limiter)
        if components.generator is not None:
            state.generator_status = "ready"
            return state
        state._thread = threading.Thread(target=state._load_generator, name="generator-load", daemon=True)
        state._thread.start()
        return state

    @property
    def default(self) -> Collection:
        return self.collections.default()

    @property
    def pipeline(self) -> Pipeline:
        """The default collection's pipeline (what holds the generator for every collection)."""
        return self.default.pipeline

    @property
    def store(self) -> VectorStore:
        return self.components.store

    @property
    def embedder(self) -> Embedder:
        return self.components.embedder

    def _load_generator(self) -> None:
        try:
            generator = build_generator(self.settings)
            self.components = self.components.with_generator(generator)
            self.collections.set_components(self.components)
            self.generator_status = "ready"
            log.info("generator ready: %s", generator.name)
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
