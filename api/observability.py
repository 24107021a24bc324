"""What the server tells its operator: Prometheus metrics (GET /metrics), a request id on every
response and log line, and JSON log lines.

Not to be confused with ``rag.metrics``, the evaluator's answer-quality metrics: these are
operational counters and histograms in the Prometheus text format.

- **One registry per app** (``ServiceMetrics.registry``), never prometheus-client's global default,
  so several apps in one process (the test session serves many) do not collide or share counts.
- **Outermost layers.** ``ObservedApp`` puts ``RequestIdMiddleware`` and ``HttpMetricsMiddleware``
  outside Starlette's ``ServerErrorMiddleware``: a 500 from an unexpected exception is counted and
  carries its request id too (a middleware added with ``add_middleware`` sits inside it and never
  sees that response).
- **Bounded labels.** Requests are labelled by their route template (``/v1/documents/{doc_id}``),
  not the raw path; refusals by a short class, not their free-text reason.
- **Nothing private at INFO.** Log lines carry ids, routes, statuses and timings, never a question,
  a chunk's text or a key: the access line has the path without its query string.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.errors import RagError
from rag.pipeline import Answer

if TYPE_CHECKING:
    from api.state import AppState

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what Prometheus scrapers expect by default
REQUEST_ID_HEADER = "x-request-id"
# An incoming id is kept only if it is short and made of characters that are safe in a header, a
# log line and a label (a proxy's UUID or trace id is); anything else is replaced by a new one.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ROUTE = "unmatched"  # the route label of a request no route matched (a 404)
NO_RESPONSE = "499"  # the status label when the client left before any response (nginx's code)
# Polled often by monitors: their access lines go to DEBUG, so INFO shows the real traffic.
QUIET_ROUTES = frozenset({"/healthz", "/metrics"})
# Stages timed in Answer.timings (``<stage>_ms``) that run only when the generator ran.
GENERATION_STAGES = frozenset({"generate", "ground"})
# Refusal reasons (rag.pipeline / rag.grounding free text) -> the class counted per refusal.
REFUSAL_CLASSES = (
    ("no chunk is similar enough", "low_retrieval_score"),
    ("the model returned an empty answer", "empty_answer"),
    ("the model said the documents do not contain", "model_declined"),
    ("the answer makes no checkable statement", "no_checkable_statement"),
    ("of the answer is supported by the retrieved chunks", "unsupported"),
)

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("rag.api.access")


# -- metrics ---------------------------------------------------------------------------------


class ServiceMetrics:
    """The Prometheus metrics of one app, in a registry of their own."""

    def __init__(self, buckets_s: Sequence[float]) -> None:
        self.registry = CollectorRegistry()
        r, b = self.registry, tuple(buckets_s)
        self.requests = Counter(
            "rag_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "rag_http_request_duration_seconds",
            "Time from request to the end of the response (a stream's last event).",
            ["method", "route"],
            buckets=b,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "rag_answer_stage_duration_seconds",
            "Time of one answer stage: retrieve, generate, ground.",
            ["stage"],
            buckets=b,
            registry=r,
        )
        self.answers = Counter("rag_answers", "Answers given, refusals included.", ["outcome"], registry=r)
        self.refusals = Counter("rag_refusals", "Refusals by reason class.", ["reason"], registry=r)
        self.tokens = Counter(
            "rag_generator_tokens",
            "Tokens the generator read (in) and wrote (out).",
            ["direction"],
            registry=r,
        )
        self.cache_hits = Counter(
            "rag_answer_cache_hits", "Answers served from the answer cache.", ["kind"], registry=r
        )

    def watch(self, state: Callable[[], AppState | None]) -> None:
        """Report the queue and the index version of ``state()`` at each scrape."""
        self.registry.register(_LiveGauges(state))

    def render(self) -> bytes:
        """The registry in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)

    def observe_request(self, method: str, route: str, status: str, seconds: float) -> None:
        self.requests.labels(method, route, status).inc()
        self.request_seconds.labels(method, route).observe(seconds)


class _LiveGauges(Collector):
    """Gauges read when scraped, so they are never stale: questions waiting for the generator,
    whether it is generating, and the live index version (absent while there is no index)."""

    def __init__(self, state: Callable[[], AppState | None]) -> None:
        self._state = state

    def describe(self) -> Iterable[Metric]:
        return [*self._queue(None), _index_version(None)]

    def collect(self) -> Iterable[Metric]:
        state = self._state()
        yield from self._queue(state)
        version = _live_version(state)
        if version is not None:
            yield _index_version(version)

    def _queue(self, state: AppState | None) -> list[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "rag_generation_queue_waiting",
            "Questions waiting for the generator (server.max_waiting_questions).",
        )
        busy = GaugeMetricFamily("rag_generation_in_progress", "1 while an answer is being generated.")
        if state is not None:
            waiting.add_metric([], state.gate.waiting)
            busy.add_metric([], float(state.gate.busy))
        return [waiting, busy]


def _index_version(version: int | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily("rag_index_version", "The committed index version queries are answered from.")
    if version is not None:
        family.add_metric([], version)
    return family


def _live_version(state: AppState | None) -> int | None:
    if state is None:
        return None
    try:
        return state.store.snapshot().version
    except RagError:  # no index yet, or a damaged one (/healthz says which)
        return None


def record_answer(target: AppState | ServiceMetrics | None, answer: Answer) -> None:
    """Count one answer the client gets (call it once per Answer, streamed or not): outcome,
    refusal class, stage timings, tokens, and cache hits. A state without metrics (an AppState
    built outside an app) records nothing."""
    metrics = target if isinstance(target, ServiceMetrics) else getattr(target, "metrics", None)
    if metrics is None:
        return
    metrics.answers.labels("refused" if answer.refused else "answered").inc()
    if answer.refused:
        metrics.refusals.labels(refusal_class(answer.reason)).inc()
    if answer.cached:
        metrics.cache_hits.labels(answer.cached).inc()
    for stage, seconds in stage_seconds(answer).items():
        metrics.stage_seconds.labels(stage).observe(seconds)
    if _generated_now(answer):
        metrics.tokens.labels("in").inc(answer.usage.get("prompt_tokens", 0))
        metrics.tokens.labels("out").inc(answer.usage.get("completion_tokens", 0))


def refusal_class(reason: str) -> str:
    """The short class of a refusal reason (``REFUSAL_CLASSES``), ``other`` for any other text."""
    lowered = reason.lower()
    return next((label for phrase, label in REFUSAL_CLASSES if phrase in lowered), "other")


def stage_seconds(answer: Answer) -> dict[str, float]:
    """Seconds per stage that ran for this answer: generate and ground are left out for a refusal
    before generation and a cached answer (their timings hold 0 or the original answer's)."""
    stages = {key.removesuffix("_ms"): ms / 1000 for key, ms in answer.timings.items() if key.endswith("_ms")}
    if not _generated_now(answer):
        stages = {s: v for s, v in stages.items() if s not in GENERATION_STAGES}
    return stages


def _generated_now(answer: Answer) -> bool:
    return answer.grounding is not None and answer.cached is None


# -- middleware ------------------------------------------------------------------------------


class ObservedApp(FastAPI):
    """A FastAPI app whose outermost layers are the request id, then the HTTP metrics and the
    access log (outside ServerErrorMiddleware: module docstring). ``metrics`` also reports the
    app state's queue and index at each scrape."""

    def __init__(self, metrics: ServiceMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        metrics.watch(lambda: getattr(self.state, "rag", None))

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(HttpMetricsMiddleware(super().build_middleware_stack(), self.metrics))


class RequestIdMiddleware:
    """Pure ASGI: the request's id is its valid ``X-Request-ID`` or a new one; it is returned on
    the response (errors and streams included) and held in ``request_id`` for the log lines."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope) or uuid.uuid4().hex
        header = (REQUEST_ID_HEADER.encode(), rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


def incoming_request_id(scope: Scope) -> str | None:
    """The client's (or proxy's) ``X-Request-ID`` when it is valid (``VALID_REQUEST_ID``)."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1")
            return text if VALID_REQUEST_ID.fullmatch(text) else None
    return None


class HttpMetricsMiddleware:
    """Pure ASGI: counts and times each request by method, route template and status, and writes
    one access log line (the path without its query string)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = NO_RESPONSE

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            self.metrics.observe_request(scope["method"], route, status, seconds)
            _log_access(scope, route, status, seconds)


def route_template(scope: Scope) -> str:
    """The matched route's path template (set in the scope by the router), or ``unmatched``."""
    return getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE


def _log_access(scope: Scope, route: str, status: str, seconds: float) -> None:
    level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
    method, path, ms = scope["method"], scope["path"], round(seconds * 1000, 1)
    fields = {"method": method, "path": path, "route": route, "status": int(status), "duration_ms": ms}
    access_log.log(level, "%s %s %s %.1f ms", method, path, status, ms, extra=fields)


# -- logging ---------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the current request's, or ``-`` outside one) to every record a
    handler with this filter writes, whichever logger it came from."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get() or "-"
        return True


# Attributes every LogRecord has; any other attribute came from ``extra=`` and is a field.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, the ``extra``
    fields, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id_of(record),
        }
        entry |= {
            k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _request_id_of(record: logging.LogRecord) -> str | None:
    rid = getattr(record, "request_id", None)
    return request_id.get() if rid in (None, "-") else rid


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``rag serve`` (uvicorn's ``log_config``): one stderr
    handler in ``log_format`` (``json`` or ``text``) with the request id, for our loggers and
    uvicorn's. Uvicorn's access log is off: ``HttpMetricsMiddleware`` writes one that has the id
    and no query string."""
    formatter = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            "faiss": {"level": "WARNING"},  # which CPU build it tried, at every start
        },
    }
