"""Observability (issue 13): GET /metrics, request ids and log lines, over real HTTP on loopback.

Most tests serve the app in this process (tests/serving.py ``serving_in_thread``) over the
session's index and real embedder, with a declared scripted generator (``RecordingGenerator``:
it writes one fixed answer and reports fixed token counts, so the expected counts are exact and
no model loads). The JSON log test runs `rag serve` as a process, as an operator would; the slow
test checks the real generator's stages and tokens.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.observability import RequestIdFilter, refusal_class
from rag.components import build_components, build_judge
from rag.config import Settings, load_settings
from rag.grounding.answer import ground_answer
from rag.protocols import Embedder
from tests.api.test_query_options import RELAY, RecordingGenerator
from tests.serving import serve_process, serving_in_thread, upload, wait_for_job

DEAD_GENERATOR = {"generator.backend": "openai", "generator.base_url": "http://127.0.0.1:9/v1"}
OFF_TOPIC = "Who wrote the novel Pride and Prejudice?"
DOCUMENT_ROUTE = "/v1/documents/{doc_id:path}"
NEW_ID = re.compile(r"[0-9a-f]{32}")  # a request id the server made (uuid4 hex)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _boom() -> None:
    """A sync route (run in a worker thread) that logs, then fails unexpectedly: a 500."""
    logging.getLogger("tests.boom").warning("about to fail")
    raise RuntimeError("unexpected")


@pytest.fixture
def server(built_index: Settings, embedder: Embedder) -> Iterator[httpx.Client]:
    """A fresh app (fresh counts) on loopback, with a /boom route for the 500 cases."""
    generator = RecordingGenerator("The zephyr-relay daemon listens on TCP port 7341.")
    components = build_components(built_index, embedder=embedder, generator=generator)
    app = create_app(built_index, components=components)
    app.add_api_route("/boom", _boom, include_in_schema=False)
    with serving_in_thread(app) as client:
        yield client


def scrape(client: httpx.Client) -> Samples:
    """GET /metrics, parsed by prometheus-client's own parser."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = text_string_to_metric_families(r.text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def ask(client: httpx.Client, question: str, **extra: object) -> dict:
    r = client.post("/v1/query", json={"question": question, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def ask_streamed(client: httpx.Client, question: str, headers: dict | None = None) -> httpx.Response:
    payload = {"question": question, "stream": True, "cache": False}
    with client.stream("POST", "/v1/query", json=payload, headers=headers) as r:
        r.read()
    assert r.status_code == 200 and "event: answer" in r.text, r.text
    return r


# ------------------------------------------------------------------------------ GET /metrics


def test_metrics_count_requests_by_route_template_and_answers_by_stage(server: httpx.Client) -> None:
    doc_ids = [d["id"] for d in server.get("/v1/documents").json()["documents"][:2]]
    for doc_id in doc_ids:
        assert server.get(f"/v1/documents/{doc_id}").status_code == 200
    assert server.get("/no/such/path").status_code == 404
    assert not ask(server, RELAY)["refused"]  # generated
    assert ask(server, RELAY)["cached"] == "exact"
    assert ask(server, OFF_TOPIC)["refused"]  # refused before generation
    ask_streamed(server, RELAY)  # generated again (cache: false)
    m = scrape(server)

    requests = "rag_http_requests_total"
    assert value(m, requests, method="POST", route="/v1/query", status="200") == 4
    assert value(m, requests, method="GET", route=DOCUMENT_ROUTE, status="200") == 2
    assert value(m, requests, method="GET", route="unmatched", status="404") == 1
    assert value(m, "rag_http_request_duration_seconds_count", method="POST", route="/v1/query") == 4
    labels = {v for _, pairs in m for _, v in pairs}
    assert not labels & set(doc_ids) and "/no/such/path" not in labels  # templates, not raw paths

    assert value(m, "rag_answers_total", outcome="answered") == 3
    assert value(m, "rag_answers_total", outcome="refused") == 1
    assert value(m, "rag_refusals_total", reason="low_retrieval_score") == 1
    assert value(m, "rag_answer_cache_hits_total", kind="exact") == 1
    stage = "rag_answer_stage_duration_seconds_count"
    assert value(m, stage, stage="retrieve") == 4
    assert value(m, stage, stage="generate") == value(m, stage, stage="ground") == 2  # not cached, refused
    assert value(m, "rag_generator_tokens_total", direction="in") == 2 * 120  # RecordingGenerator's
    assert value(m, "rag_generator_tokens_total", direction="out") == 2 * 9

    assert value(m, "rag_generation_queue_waiting") == 0
    assert value(m, "rag_generation_in_progress") == 0
    assert value(m, "rag_index_version") == server.get("/v1/index").json()["version"]


def test_two_apps_in_one_process_keep_their_own_counts(
    server: httpx.Client, built_index: Settings, embedder: Embedder
) -> None:
    for _ in range(2):
        assert server.post("/v1/search", json={"query": "relay port"}).status_code == 200
    settings = load_settings(index_dir=built_index.index_dir, **DEAD_GENERATOR)  # loads in no time
    other_app = create_app(settings, components=build_components(settings, embedder=embedder))
    with serving_in_thread(other_app) as other:
        theirs = scrape(other)
    ours = scrape(server)
    search = {"method": "POST", "route": "/v1/search", "status": "200"}
    assert value(ours, "rag_http_requests_total", **search) == 2
    assert value(theirs, "rag_http_requests_total", **search) == 0
    default = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("rag_") for name in default)  # not the global registry


def test_metrics_is_documented_as_prometheus_text(server: httpx.Client) -> None:
    op = server.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["text/plain; version=0.0.4; charset=utf-8"]


def test_an_unexpected_error_is_counted_as_a_500(server: httpx.Client) -> None:
    r = server.get("/boom")
    assert r.status_code == 500 and r.json()["error"].startswith("internal server error")
    assert value(scrape(server), "rag_http_requests_total", method="GET", route="/boom", status="500") == 1


@pytest.mark.parametrize(
    ("draft", "expected"),
    [
        ("", "empty_answer"),
        ("The documents do not contain the answer.", "model_declined"),
        ("It is.", "no_checkable_statement"),
        ("Zephyr is written in Rust and runs on Mars every Tuesday.", "unsupported"),
    ],
)
def test_refusal_reasons_from_grounding_map_to_their_class(
    embedder: Embedder, draft: str, expected: str
) -> None:
    """The reasons as rag.grounding writes them today: a change of wording fails here."""
    settings = Settings()
    context = ["Zephyr stores snapshots in /var/lib/zephyr/snapshots."]
    grounded = ground_answer(draft, context, build_judge(settings, embedder, None), settings.grounding)
    assert grounded.refused and refusal_class(grounded.reason) == expected
    assert refusal_class("a reason no one wrote yet") == "other"


# ------------------------------------------------------------------------------ request ids


def _stream_response(client: httpx.Client, headers: dict) -> httpx.Response:
    return ask_streamed(client, RELAY, headers)


CASES = {
    "200": lambda c, h: c.get("/healthz", headers=h),
    "422": lambda c, h: c.post("/v1/query", json={}, headers=h),
    "404": lambda c, h: c.get("/no/such/path", headers=h),
    "500": lambda c, h: c.get("/boom", headers=h),
    "stream": _stream_response,
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_valid_request_id_comes_back_on_every_response(server: httpx.Client, case: str) -> None:
    r = CASES[case](server, {"X-Request-ID": f"trace-{case}.a:b_c"})
    assert r.headers["x-request-id"] == f"trace-{case}.a:b_c"
    assert r.headers.get_list("x-request-id") == [f"trace-{case}.a:b_c"]  # once


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("sent", [None, "has space", "x" * 129, "semi;colon"])
def test_a_missing_or_invalid_request_id_is_replaced(
    server: httpx.Client, case: str, sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    first, second = (CASES[case](server, headers).headers["x-request-id"] for _ in range(2))
    assert NEW_ID.fullmatch(first) and NEW_ID.fullmatch(second) and first != second


def test_log_records_carry_the_request_id(server: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    """From the access line, from a route's worker thread, and from the 500 handler."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())
    server.post("/v1/query", json={}, headers={"X-Request-ID": "invalid-1"})
    server.get("/boom", headers={"X-Request-ID": "boom-1"})
    by_id = {}
    for record in caplog.records:
        by_id.setdefault(record.request_id, []).append(record)
    access = [r for r in by_id["invalid-1"] if r.name == "rag.api.access"]
    assert [(r.route, r.status, r.method) for r in access] == [("/v1/query", 422, "POST")]
    names = {r.name: r.getMessage() for r in by_id["boom-1"]}
    assert names["tests.boom"] == "about to fail"  # logged in the worker thread
    assert names["rag.api"].startswith("unhandled error on GET /boom")
    assert names["rag.api.access"].startswith("GET /boom 500")


# ------------------------------------------------------------------------------ rag serve logs

KEY = "observability-admin-key-7f3a"
CHUNK = "The quartermaster vault opens with the phrase amber-heron-4417 at dawn."
QUESTION = "Which phrase opens the quartermaster vault at dawn, and why?"
SEARCH = "quartermaster vault phrase"


def _serve_env(log_format: str) -> dict[str, str]:
    return {
        "RAG_GENERATOR__BACKEND": DEAD_GENERATOR["generator.backend"],
        "RAG_GENERATOR__BASE_URL": DEAD_GENERATOR["generator.base_url"],
        "RAG_SERVER__ADMIN_API_KEY": KEY,
        "RAG_SERVER__LOG_FORMAT": log_format,
    }


def _log_of(index_dir: Path, client: httpx.Client) -> list[str]:
    """The lines `rag serve` wrote (tests/serving.py keeps them beside the index)."""
    path = index_dir.parent / f"server-{client.base_url.port}.log"
    return [line for line in path.read_text().splitlines() if line.strip()]


def ask_streamed_or_error(client: httpx.Client) -> str:
    """A streamed question (the dead generator makes it an `error` event); its request id."""
    payload = {"question": QUESTION, "stream": True}
    with client.stream("POST", "/v1/query", json=payload) as r:
        r.read()
    assert r.status_code == 200 and "event:" in r.text, r.text
    return r.headers["x-request-id"]


def test_rag_serve_writes_json_lines_with_request_ids_and_nothing_private(tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    auth = {"Authorization": f"Bearer {KEY}"}
    with serve_process(index_dir, _serve_env("json")) as (_, client):
        sent = {"X-Request-ID": "upload-1"} | auth
        job = upload(client, {"vault.md": CHUNK}, sent)
        assert wait_for_job(client, job)["status"] == "succeeded"
        ids = [
            client.post("/v1/search", json={"query": SEARCH}).headers["x-request-id"],
            client.post("/v1/query", json={"question": QUESTION}).headers["x-request-id"],
            ask_streamed_or_error(client),
            client.post("/v1/query", json={"question": QUESTION, "top_k": 0}).headers["x-request-id"],
        ]
        client.get("/metrics")
    lines = _log_of(index_dir, client)
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message", "request_id"} <= set(entries[0])
    text = "\n".join(lines)
    for private in (CHUNK, "amber-heron-4417", QUESTION, "quartermaster", KEY):
        assert private not in text, private
    access = {e["request_id"]: e for e in entries if e["logger"] == "rag.api.access"}
    assert access["upload-1"]["route"] == "/v1/documents" and access["upload-1"]["status"] == 202
    assert [access[i]["route"] for i in ids] == ["/v1/search", "/v1/query", "/v1/query", "/v1/query"]
    assert access[ids[-1]]["status"] == 422
    assert all(e["level"] in ("INFO", "WARNING", "ERROR") for e in entries)


def test_rag_serve_text_logs_show_the_request_id(tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    with serve_process(index_dir, _serve_env("text")) as (_, client):
        client.post("/v1/search", json={"query": SEARCH}, headers={"X-Request-ID": "text-1"})
    line = next(x for x in _log_of(index_dir, client) if "[text-1]" in x)
    assert " INFO rag.api.access [text-1] POST /v1/search 404 " in line  # no index yet


# ------------------------------------------------------------------------------ the real model


@pytest.mark.slow
def test_the_real_generator_s_stages_and_tokens_are_counted(llm_server: httpx.Client) -> None:
    before = scrape(llm_server)
    body = ask(llm_server, "Which TCP port does the zephyr-relay daemon listen on?")
    after = scrape(llm_server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    stage = "rag_answer_stage_duration_seconds"
    for name in ("retrieve", "generate", "ground"):
        assert grew(f"{stage}_count", stage=name) == 1
    assert grew(f"{stage}_sum", stage="generate") == pytest.approx(body["timings"]["generate_ms"] / 1000)
    assert grew("rag_generator_tokens_total", direction="in") == body["usage"]["prompt_tokens"] > 0
    assert grew("rag_generator_tokens_total", direction="out") == body["usage"]["completion_tokens"] > 0
    outcome = "refused" if body["refused"] else "answered"
    assert grew("rag_answers_total", outcome=outcome) == 1
