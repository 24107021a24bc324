"""The client's server-sent-events parsing, line by line (no server: the stream's framing cases
that a real answer rarely shows, such as multi-line data and an unterminated last event)."""

from __future__ import annotations

import json

import pytest

from client.http import END_OF_STREAM, RagClientError, SseParser, stream_item
from client.models import Answer, StreamText

CITATION = {
    "n": 1,
    "chunk_id": 7,
    "document_id": "doc_c3b559467fb5c9f8",
    "source": "zephyr/network.html",
    "page": None,
    "start": 0,
    "end": 120,
    "score": 0.71,
    "text": "The zephyr-relay daemon ... listens on TCP port 7341",
}
ANSWER = {
    "answer": "Port 7341 [1].",
    "refused": False,
    "reason": "supported",
    "citations": [],
    "timings": {"retrieve_ms": 1.0, "generate_ms": 2.0},
}


def _events(lines: list[str]) -> list[tuple[str, str]]:
    parser = SseParser()
    return [e for line in [*lines, END_OF_STREAM] if (e := parser.feed(line)) is not None]


def test_pings_are_skipped_and_multi_line_data_is_joined() -> None:
    lines = [": ping - 2026-12-02", "event: token", "data: a", "data: b", "", "data: no event name", ""]
    assert _events(lines) == [("token", "a\nb"), ("message", "no event name")]


def test_an_unterminated_last_event_is_not_lost() -> None:
    assert _events(["event: answer", f"data: {json.dumps(ANSWER)}"]) == [("answer", json.dumps(ANSWER))]


def test_token_sentence_and_answer_events_become_models() -> None:
    token = stream_item("token", '{"text": "Port"}')
    sentence = stream_item("sentence", json.dumps({"text": " Port 7341 [1].", "citations": [CITATION]}))
    assert token == StreamText(event="token", text="Port")
    assert isinstance(sentence, StreamText) and sentence.citations[0].n == 1
    later = stream_item("sentence", '{"text": "More.", "citations": [], "confidence": 0.9}')
    assert isinstance(later, StreamText) and later.model_extra == {"confidence": 0.9}  # a newer field
    assert isinstance(stream_item("answer", json.dumps(ANSWER)), Answer)
    assert stream_item("progress", "{}") is None  # an event this client does not know yet


def test_an_error_event_raises_with_its_status_and_message() -> None:
    with pytest.raises(RagClientError) as caught:
        stream_item("error", '{"error": "generator at http://127.0.0.1:9/v1 failed", "status": 502}')
    assert (caught.value.status, caught.value.message) == (502, "generator at http://127.0.0.1:9/v1 failed")
