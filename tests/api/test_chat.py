"""POST /v1/chat/completions and GET /v1/models through the official `openai` SDK, unmodified.

Fast tests run against `light_server` (`rag serve` as a process; its generator is an OpenAI URL
where nothing listens): models, every validation error in OpenAI's error shape (so the SDK raises
its own exception classes), the extension fields on a refusal decided before generation, the
cheap rewrite of a one-message history, and a generator failure mid-stream. Slow tests run
against `llm_server` (the real default generator): grounded answers, sync and streamed, the
refusal, a follow-up rewritten by the generator, and 429 from a full queue.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from api.routes.chat import model_ids
from rag.config import Settings, load_settings
from rag.protocols import Embedder, Generator
from tests.serving import serving_in_thread

MODEL = model_ids(load_settings())[0]
REFUSAL = load_settings().grounding.refusal_message
NOWHERE = {"filters": {"source_prefix": "nowhere/"}}  # matches no document: refused before generating


def sdk(server: httpx.Client) -> openai.OpenAI:
    """The SDK pointed at a test server; no retries, so a 429 or 5xx is seen as it is."""
    return openai.OpenAI(base_url=f"{str(server.base_url).rstrip('/')}/v1", api_key="unused", max_retries=0)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


# ------------------------------------------------------------------------------ fast: models


def test_models_lists_the_configured_generator(light_server: httpx.Client) -> None:
    client = sdk(light_server)
    models = client.models.list()
    assert [m.id for m in models] == [MODEL]
    assert models.data[0].owned_by == "rag-service" and models.data[0].object == "model"
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_an_unknown_model_is_not_found(light_server: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(light_server).chat.completions.create(model="gpt-4o", messages=[user("What is Zephyr?")])
    error = caught.value
    assert error.status_code == 404 and error.code == "model_not_found" and error.param == "model"
    assert MODEL in error.message and "GET /v1/models" in error.message
    assert error.body == {  # OpenAI's error shape, exactly
        "message": error.body["message"],
        "type": "not_found_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert error.message.endswith(error.body["message"])  # the SDK puts "Error code: 404 - " first


# -------------------------------------------------------------------------- fast: bad input


@pytest.mark.parametrize(
    ("messages", "extra", "param", "words"),
    [
        ([], {}, "messages", "is empty"),
        (
            [user("What is Zephyr?"), {"role": "assistant", "content": "A tool."}],
            {},
            "messages",
            'role "user"',
        ),
        ([user("   ")], {}, "messages", "blank"),
        ([user("x" * 2001)], {}, "messages", "2001 characters"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            {},
            None,
            "text only",
        ),
        ([{"role": "robot", "content": "hi"}], {}, None, "role"),
        ([user("What is Zephyr?")], {"n": 2}, "n", "one grounded answer"),
        (
            [user("What is Zephyr?")],
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools",
            "not supported",
        ),
        (
            [user("What is Zephyr?")],
            {"response_format": {"type": "json_object"}},
            "response_format",
            "not supported",
        ),
        ([user("What is Zephyr?")], {"topk": 3}, "topk", "Extra inputs"),
        ([user("What is Zephyr?")], {"top_k": 0}, "top_k", "greater than or equal to 1"),
        ([user("What is Zephyr?")], {"max_tokens": 5000}, "max_tokens", "less than or equal to 1024"),
        ([user("What is Zephyr?")], {"stop": ["a"] * 9}, "stop", "at most 8"),
    ],
    ids=[
        "no messages",
        "last not from the user",
        "blank question",
        "over-long question",
        "image part",
        "unknown role",
        "n=2",
        "tools",
        "json output",
        "unknown field",
        "top_k 0",
        "max_tokens too high",
        "too many stops",
    ],
)
def test_bad_requests_are_400_in_openai_shape(
    light_server: httpx.Client, messages: list, extra: dict, param: str | None, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(light_server).chat.completions.create(model=MODEL, messages=messages, extra_body=extra)
    error = caught.value
    assert words in error.message, error.message
    assert error.body["type"] == "invalid_request_error"
    if param is not None:
        assert error.param == param or error.param.startswith(f"{param}."), error.body


def test_neutral_openai_parameters_are_accepted(light_server: httpx.Client) -> None:
    """What OpenAI clients send by default must not be refused (refused only before generating
    here, thanks to the filter: no model is needed)."""
    completion = sdk(light_server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "You are helpful."}, user("What is Zephyr?")],
        n=1,
        temperature=0.7,
        top_p=0.9,
        frequency_penalty=0,
        presence_penalty=0,
        user="someone",
        tool_choice="none",
        response_format={"type": "text"},
        extra_body=NOWHERE,
    )
    assert completion.choices[0].message.content == REFUSAL


def test_a_1_mb_message_and_10000_messages_are_413(light_server: httpx.Client) -> None:
    client = sdk(light_server)
    for messages in ([user("x" * 1_000_000)], [user("hi")] * 10_000):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=MODEL, messages=messages)
        assert caught.value.status_code == 413
        assert caught.value.code == "request_too_large" and "server.max_body_kb" in caught.value.message


def test_more_messages_than_configured_is_400(light_server: httpx.Client) -> None:
    limit = load_settings().conversation.max_messages
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(light_server).chat.completions.create(model=MODEL, messages=[user("a")] * (limit + 1))
    assert caught.value.code == "too_many_messages" and "conversation.max_messages" in caught.value.message


def test_other_routes_keep_their_error_shape(light_server: httpx.Client) -> None:
    body = light_server.post("/v1/query", json={"question": ""}).json()
    assert isinstance(body["error"], str) and body["detail"][0]["field"] == "question"
    assert (
        light_server.post("/v1/query", json={"question": "x" * 70_000})
        .json()["error"]
        .startswith("request body is")
    )


def test_openapi_documents_the_openai_error_shape(light_server: httpx.Client) -> None:
    spec = light_server.get("/openapi.json").json()
    op = spec["paths"]["/v1/chat/completions"]["post"]
    assert "422" not in op["responses"]
    for status in ("400", "404", "413", "429", "500"):
        ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/OpenAIErrorBody"), status
    assert {"top_k", "filters", "mode", "collection"} <= set(
        spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    )


# ------------------------------------------------------------- fast: answers without a model


def test_a_refusal_is_a_normal_reply_with_a_flag(light_server: httpx.Client) -> None:
    completion = sdk(light_server).chat.completions.create(
        model=MODEL, messages=[user("Where does Zephyr store snapshots?")], extra_body=NOWHERE
    )
    choice = completion.choices[0]
    assert choice.message.content == REFUSAL and choice.message.refusal is None
    assert choice.message.model_extra == {"references": [], "refused": True}
    assert choice.finish_reason == "stop" and completion.object == "chat.completion"
    assert completion.usage.total_tokens == 0  # nothing was generated
    rag = completion.model_extra["rag"]
    assert rag["refused"] is True and "no chunk" in rag["reason"] and rag["rewrite"] == "none"


def test_a_one_message_history_is_concatenated_and_returned(light_server: httpx.Client) -> None:
    messages = [user("Where does Zephyr store snapshots?"), user("and its log?")]
    completion = sdk(light_server).chat.completions.create(model=MODEL, messages=messages, extra_body=NOWHERE)
    rag = completion.model_extra["rag"]
    assert rag["rewrite"] == "concat" and rag["question"] == "Where does Zephyr store snapshots? and its log?"


def test_an_unknown_collection_is_not_found(light_server: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(light_server).chat.completions.create(
            model=MODEL, messages=[user("What is Zephyr?")], extra_body={"collection": "finance"}
        )
    assert caught.value.param == "collection"


def test_a_streamed_refusal_ends_with_flag_references_and_usage(light_server: httpx.Client) -> None:
    stream = sdk(light_server).chat.completions.create(
        model=MODEL, messages=[user("Where does Zephyr store snapshots?")], stream=True, extra_body=NOWHERE
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REFUSAL
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop" and final.usage.total_tokens == 0
    assert final.model_extra["references"] == [] and final.model_extra["refused"] is True
    assert len({c.id for c in chunks}) == 1 and final.object == "chat.completion.chunk"


def test_a_failing_generator_is_an_openai_error(light_server: httpx.Client) -> None:
    """light_server's generator is a URL where nothing listens: 502 before a stream, an error
    chunk (which the SDK raises) within one."""
    client = sdk(light_server)
    question = [user("Which TCP port does the zephyr-relay daemon listen on?")]
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL, messages=question)
    assert caught.value.status_code == 502 and caught.value.body["type"] == "server_error"
    stream = client.chat.completions.create(model=MODEL, messages=question, stream=True)
    with pytest.raises(openai.APIError) as streamed:
        list(stream)
    assert "127.0.0.1:9" in streamed.value.message and streamed.value.body["status"] == 502


# ----------------------------------------------------------------------- slow: real answers

slow = pytest.mark.slow


@slow
def test_sync_answer_with_references_and_usage(llm_server: httpx.Client) -> None:
    completion = sdk(llm_server).chat.completions.create(
        model=MODEL,
        messages=[user("Which TCP port does the zephyr-relay daemon listen on?")],
        extra_body={"top_k": 3},
    )
    choice = completion.choices[0]
    message = choice.message
    assert "7341" in message.content and choice.finish_reason == "stop"
    assert message.model_extra["refused"] is False
    references = message.model_extra["references"]
    assert 1 <= len(references) <= 3
    cited = [r for r in references if "7341" in r["text"]]
    assert cited and cited[0]["source"].endswith("network.html") and f"[{cited[0]['n']}]" in message.content
    assert {"chunk_id", "source", "page", "start", "end", "score", "text"} <= set(cited[0])
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert completion.model == MODEL and completion.id.startswith("chatcmpl-")


@slow
@pytest.mark.parametrize("include_usage", [False, True], ids=["usage on the final chunk", "usage chunk"])
def test_streamed_answer_is_checked_text_then_a_final_chunk(
    llm_server: httpx.Client, include_usage: bool
) -> None:
    stream = sdk(llm_server).chat.completions.create(
        model=MODEL,
        messages=[user("How long does Zephyr keep weekly snapshots by default?")],
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "8 weeks" in text or "eight weeks" in text.lower()
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.choices[0].finish_reason == "stop" and final.model_extra["refused"] is False
    references = final.model_extra["references"]
    assert any(r["source"].endswith("retention.txt") for r in references)
    assert all(f"[{r['n']}]" in text for r in references)
    usage_chunk = chunks[-1] if include_usage else final
    assert usage_chunk.usage.completion_tokens > 0
    if include_usage:
        assert chunks[-1].choices == [] and final.usage is None


@slow
def test_a_question_the_documents_do_not_answer_is_refused(llm_server: httpx.Client) -> None:
    completion = sdk(llm_server).chat.completions.create(
        model=MODEL, messages=[user("Which encryption cipher does Zephyr use to protect snapshots?")]
    )
    message = completion.choices[0].message
    assert message.content == REFUSAL
    assert message.model_extra["refused"] is True and message.model_extra["references"] == []


@slow
def test_a_follow_up_is_rewritten_from_the_conversation(llm_server: httpx.Client) -> None:
    # Not the "where is its configuration file?": the corpus never calls zephyr.conf a
    # configuration file, so the support judge refuses even a perfect standalone question there.
    client = sdk(llm_server)
    messages: list = [user("Where does Zephyr store its snapshots?")]
    first = client.chat.completions.create(model=MODEL, messages=messages)
    assert "/var/lib/zephyr/snapshots" in first.choices[0].message.content
    # The SDK's own message object goes back as it came (with our extension fields in it).
    messages += [first.choices[0].message.model_dump(), user("And where does it write its log?")]
    follow_up = client.chat.completions.create(model=MODEL, messages=messages)
    rag = follow_up.model_extra["rag"]
    # The generator's rewrite, or the concatenation it falls back to when the rewrite named nothing.
    assert rag["rewrite"] in ("generator", "concat") and "zephyr" in rag["question"].lower(), rag
    assert rag["timings"]["condense_ms"] > 0  # the model was asked either way
    message = follow_up.choices[0].message
    assert "/var/log/zephyr/zephyr.log" in message.content, (rag, message.content)
    assert any(r["source"].endswith("overview.md") for r in message.model_extra["references"])


@pytest.fixture(scope="module")
def one_at_a_time(built_index: Settings, embedder: Embedder, generator: Generator) -> Iterator[httpx.Client]:
    """The real app over the session's generator (not loaded again) with no waiting line at all:
    a second question while one is answered gets 429."""
    from api.app import create_app
    from rag.components import build_components

    overrides = {"server.max_waiting_questions": 0, "cache.enabled": False}
    settings = load_settings(index_dir=built_index.index_dir, **overrides)
    components = build_components(settings, embedder=embedder, generator=generator)
    with serving_in_thread(create_app(settings, components=components)) as client:
        yield client


@slow
def test_a_full_queue_is_a_rate_limit_error(one_at_a_time: httpx.Client) -> None:
    client = sdk(one_at_a_time)
    long = [
        user("Describe everything the documents say about Zephyr: snapshots, retention, relay and restore.")
    ]
    with client.chat.completions.create(model=MODEL, messages=long, stream=True, max_tokens=400) as stream:
        next(iter(stream))  # the role chunk: the answer is under way
        _wait_until_busy(one_at_a_time)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=[user("What is Zephyr?")])
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    assert caught.value.code == "rate_limit_exceeded" and "busy" in caught.value.message


def _wait_until_busy(client: httpx.Client, timeout_s: float = 30) -> None:
    """Until the first answer holds the generator (GET /healthz says so)."""
    deadline = time.monotonic() + timeout_s
    while not client.get("/healthz").json()["queue"]["busy"]:
        assert time.monotonic() < deadline, "the first answer never took the generator"
        time.sleep(0.05)
