"""GET /metrics: the server's Prometheus metrics (api/observability.py), for a scraper.

Counts and timings only, no document text, question or key; still, once API keys are
configured it needs one with ``*:admin`` (a scraper's key), since it spans every collection.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import Admin
from api.observability import PROMETHEUS_CONTENT_TYPE, ObservedApp

router = APIRouter(tags=["health"])


class PrometheusText(Response):
    media_type = PROMETHEUS_CONTENT_TYPE


@router.get(
    "/metrics",
    response_class=PrometheusText,
    dependencies=[Admin],
    responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics (text format 0.0.4)",
)
def metrics(request: Request) -> PrometheusText:
    """Request counts and latency per route, answer stage latency, refusals by reason class,
    tokens, answer-cache hits, the generation queue and the index version (docs/operations.md)."""
    # A sync route (run in a worker thread): reading the index version may touch the disk.
    app = request.app
    if not isinstance(app, ObservedApp):
        raise TypeError("GET /metrics needs the app from api.app.create_app (an ObservedApp)")
    return PrometheusText(app.metrics.render())
