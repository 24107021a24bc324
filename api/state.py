"""What the app holds for its lifetime: the pipeline, and the generator loaded in the background.

The default generator takes about a minute to load, so the server starts answering /healthz and
/v1/search at once and /v1/query as soon as the model is ready.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from rag.components import build_generator, build_pipeline
from rag.config import Settings
from rag.pipeline import Pipeline

log = logging.getLogger("rag.api")


@dataclass
class AppState:
    settings: Settings
    pipeline: Pipeline
    generator_status: str = "loading"
    _thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: Settings) -> AppState:
        state = cls(settings, build_pipeline(settings))
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
