"""client.http against the real server: typed search, health and errors on ``light_server``;
uploads and jobs on a `rag serve` of its own with an admin key; answers, whole and streamed, on
``llm_server`` (slow: the real generator)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from client import models
from client.http import AsyncRagClient, RagClient, RagClientError
from client.models import Answer, Filters, StreamText
from tests.client.conftest import RELAY_PORT, RELAY_QUESTION
from tests.serving import free_port, running_server

ADMIN_KEY = "client-test-admin-key-0123456789"
DEAD_GENERATOR = {"RAG_GENERATOR__BACKEND": "openai", "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1"}
# The server's schema component each client model mirrors (GET /openapi.json).
MIRRORS: dict[str, type[BaseModel]] = {
    "ChunkOut": models.Hit,
    "Citation": models.Citation,
    "QueryResponse": models.Answer,
    "Timings": models.Timings,
    "Usage": models.Usage,
    "Health": models.Health,
    "IndexInfo": models.IndexInfo,
    "QueueInfo": models.QueueInfo,
    "JobAccepted": models.JobAccepted,
    "UploadedFile": models.UploadedFile,
    "JobOut": models.Job,
    "StageProgress": models.StageProgress,
    "FileError": models.FileError,
    "SearchResponse": models.SearchResponse,
    "Filters": models.Filters,
}


def test_the_client_models_mirror_every_field_of_the_servers_schema(light_server: httpx.Client) -> None:
    """A field the server adds or renames shows up here, not as a silently missing attribute. The
    client may know a field this server does not send yet (newer), if the field is optional."""
    schemas = light_server.get("/openapi.json").json()["components"]["schemas"]
    for name, model in MIRRORS.items():
        served = set(schemas[name]["properties"])
        assert served <= set(model.model_fields), (name, served - set(model.model_fields))
        newer = {
            field for field in set(model.model_fields) - served if model.model_fields[field].is_required()
        }
        assert not newer, (name, newer)


def test_search_returns_typed_hits_equal_to_the_json(client: RagClient, light_server: httpx.Client) -> None:
    hits = client.search(RELAY_QUESTION, top_k=3)
    raw = light_server.post("/v1/search", json={"query": RELAY_QUESTION, "top_k": 3}).json()
    assert [hit.model_dump() for hit in hits] == raw["results"]
    assert [hit.rank for hit in hits] == [1, 2, 3]
    assert hits[0].source.endswith("network.html") and RELAY_PORT in hits[0].text
    assert hits[0].dense_score is not None and hits[0].score >= hits[1].score


def test_search_passes_mode_and_filters(client: RagClient) -> None:
    sources = [hit.source for hit in client.search("how long are snapshots kept")]
    retention = next(source for source in sources if "retention" in source)
    hits = client.search("prune", top_k=5, mode="keyword", filters=Filters(source_prefix=retention))
    assert hits and {hit.source for hit in hits} == {retention}
    as_dict = client.search("prune", top_k=5, mode="keyword", filters={"source_prefix": retention})
    assert as_dict == hits
    assert all(hit.score > 0 for hit in hits)  # BM25: every hit has the query's word


def test_async_search_equals_sync(client: RagClient, base_url: str) -> None:
    async def search() -> list[models.Hit]:
        async with AsyncRagClient(base_url) as rag:
            return await rag.search(RELAY_QUESTION, top_k=4)

    assert asyncio.run(search()) == client.search(RELAY_QUESTION, top_k=4)


def test_health(client: RagClient) -> None:
    health = client.health()
    assert health.index.loaded and health.index.documents == 4 and health.index.chunks
    assert health.status == "degraded" and health.generator.startswith("unreachable")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"query": "   "}, "query"), ({"query": "port", "top_k": 1000}, "top_k")],
)
def test_an_invalid_search_is_a_422_with_the_servers_message(
    client: RagClient, kwargs: dict, field: str
) -> None:
    with pytest.raises(RagClientError) as caught:
        client.search(**kwargs)
    err = caught.value
    assert err.status == 422 and err.message.startswith("invalid request:") and field in err.message
    assert [p["field"] for p in err.detail] == [field]


def test_a_generator_failure_is_a_502_whole_or_streamed(client: RagClient) -> None:
    """light_server's generator is a dead OpenAI URL: the answer fails as a 502 response, and the
    stream (already started) fails with its `error` event."""
    with pytest.raises(RagClientError) as whole:
        client.query(RELAY_QUESTION)
    with pytest.raises(RagClientError) as streamed:
        list(client.stream(RELAY_QUESTION))
    for err in (whole.value, streamed.value):
        assert err.status == 502 and "127.0.0.1:9" in err.message


def test_an_off_topic_question_is_a_refusal_without_generation(client: RagClient) -> None:
    answer = client.query("Who wrote the novel Pride and Prejudice?")
    assert answer.refused and answer.citations == [] and answer.timings.generate_ms == 0


def test_writes_without_a_configured_key_are_403_and_unknown_jobs_404(
    client: RagClient, tmp_path: Path
) -> None:
    note = tmp_path / "note.md"
    note.write_text("A note.", encoding="utf-8")
    with pytest.raises(RagClientError) as refused:
        client.upload([note])
    assert refused.value.status == 403 and "RAG_SERVER__ADMIN_API_KEY" in refused.value.message
    with pytest.raises(RagClientError) as missing:
        client.job("no-such-job")
    assert missing.value.status == 404


def test_no_server_is_an_error_without_a_status() -> None:
    with RagClient(f"http://127.0.0.1:{free_port()}") as rag, pytest.raises(RagClientError) as caught:
        rag.health()
    assert caught.value.status is None and "/healthz failed" in caught.value.message


def test_a_base_url_without_a_scheme_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="http://"):
        RagClient("127.0.0.1:8000")


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`rag serve` with an admin key over an index of its own (uploads change it)."""
    index_dir = tmp_path_factory.mktemp("client-uploads") / "index"
    env = DEAD_GENERATOR | {"RAG_SERVER__ADMIN_API_KEY": ADMIN_KEY}
    with running_server(index_dir, env=env, timeout_s=300) as http:
        yield str(http.base_url)


def test_upload_then_wait_for_the_job_then_search_the_upload(admin_server: str, tmp_path: Path) -> None:
    relay, broken = tmp_path / "relay.md", tmp_path / "broken.pdf"
    relay.write_text("The zephyr-relay daemon listens on TCP port 7341.", encoding="utf-8")
    broken.write_bytes(b"%PDF-1.4 not really")
    with RagClient(admin_server, api_key=ADMIN_KEY) as rag:
        accepted = rag.upload([relay, broken], metadata={"relay.md": {"team": "ops"}})
        assert [f.document_id for f in accepted.files] == ["uploads/relay.md", "uploads/broken.pdf"]
        job = rag.wait_for_job(accepted.job_id, timeout_s=300)
        assert job.status == "succeeded" and job.summary and job.summary["added"] == 1
        assert [e.path for e in job.errors] == ["uploads/broken.pdf"]
        hits = rag.search("relay port", filters={"metadata": {"team": "ops"}})
    assert [(h.document_id, h.metadata) for h in hits] == [("uploads/relay.md", {"team": "ops"})]


def test_a_wrong_admin_key_is_a_401(admin_server: str, tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("A note.", encoding="utf-8")
    with RagClient(admin_server, api_key="not-the-key") as rag, pytest.raises(RagClientError) as caught:
        rag.upload([note])
    assert caught.value.status == 401


@pytest.mark.slow
def test_query_and_stream_give_the_same_grounded_answer(llm_server: httpx.Client) -> None:
    """Greedy decoding and no answer cache on llm_server: the streamed answer is the same answer,
    and its checked sentences, joined, are its text; ``draft=True`` streams the unchecked tokens."""
    with RagClient(str(llm_server.base_url)) as rag:
        whole = rag.query(RELAY_QUESTION)
        events = list(rag.stream(RELAY_QUESTION))
    assert not whole.refused and RELAY_PORT in whole.answer, whole
    assert whole.citations and whole.citations[0].source.endswith("network.html")
    *sentences, final = events
    assert isinstance(final, Answer) and final.answer == whole.answer and final.citations == whole.citations
    assert sentences and all(isinstance(s, StreamText) and s.event == "sentence" for s in sentences)
    assert "".join(s.text for s in sentences) == final.answer
    assert {c.chunk_id for s in sentences for c in s.citations} <= {c.chunk_id for c in final.citations}

    async def first_draft_item() -> StreamText | Answer:
        async with AsyncRagClient(str(llm_server.base_url)) as rag:
            async for item in rag.stream(RELAY_QUESTION, draft=True):
                return item  # leaving the stream early closes it, which stops the generation
        raise AssertionError("no event")

    first = asyncio.run(first_draft_item())
    assert isinstance(first, StreamText) and first.event == "token" and first.citations == []
