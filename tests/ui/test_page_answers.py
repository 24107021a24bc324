"""The web page answering with the real models (slow tier): a cited answer streamed on the sample
corpus, a citation opening its passage with the supporting sentence highlighted, a follow-up sent
with the conversation, an off-topic question refused with the closest passages, and a file
uploaded with the admin key that becomes answerable (its `<script>` shown as text), then deleted.

One server for the module (the session's generator and embedder, served in process), and four
questions in all: each answer takes 10-20 s on 2 cores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.ui.browser import ADMIN_KEY, ROOT, assert_local_only, screenshot, use_key

pytestmark = pytest.mark.slow

SAMPLE_DOCS = ROOT / "data" / "sample" / "docs"
QUESTION = "On systemd systems, which GID must the tty group have?"
FOLLOW_UP = "And from which UID range does it allocate dynamic users?"
OFF_TOPIC = "Who won the football world cup in 1998?"
UPLOADED = (
    "# Quokka relay\n\nThe quokka-relay daemon listens on TCP port 7712 by default.\n\n"
    "<script>alert(1)</script>\n\nIts configuration file is /etc/quokka/relay.conf.\n"
)
UPLOADED_QUESTION = "On which TCP port does the quokka-relay daemon listen by default?"
ANSWER_S = 240_000  # ms: generous for a loaded 2-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Any, generator: Any) -> Iterator[str]:
    from api.app import create_app
    from ingest.pipeline import ingest
    from rag.components import build_components
    from rag.config import load_settings
    from tests.serving import serving_in_thread

    overrides = {"server.admin_api_key": ADMIN_KEY, "server.rate_limit_per_s": 0, "cache.enabled": False}
    settings = load_settings(index_dir=tmp_path_factory.mktemp("ui-answers") / "index", **overrides)
    summary = ingest([SAMPLE_DOCS], settings, embedder)
    assert summary.failed == 0, summary
    components = build_components(settings, embedder=embedder, generator=generator)
    with serving_in_thread(create_app(settings, components=components)) as client:
        yield str(client.base_url).rstrip("/")


def ask(page: Any, question: str) -> Any:
    """Type and send ``question``; returns the new turn once its answer has finished streaming."""
    turns = page.locator("#conversation .turn")
    before = turns.count()
    page.get_by_label("Question").fill(question)
    page.get_by_role("button", name="Ask", exact=True).click()
    turn = turns.nth(before)
    expect(turn.locator(".answer")).not_to_have_class("answer streaming", timeout=ANSWER_S)
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled(timeout=ANSWER_S)
    return turn


def test_a_cited_answer_its_source_and_a_follow_up(server: str, make_page: Any) -> None:
    page = make_page(server)
    page.goto("/ui/")
    use_key(page)
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/query") else None)
    turn = ask(page, QUESTION)
    answer = turn.locator(".answer")
    assert "5" in answer.inner_text(), answer.inner_text()
    cite = answer.locator("a.cite[aria-label*='systemd-uids-gids.md']").first
    expect(cite).to_have_text(re.compile(r"^\[\d+\]$"))
    cite.click()
    panel = page.locator("#source-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("#source-meta")).to_contain_text("systemd-uids-gids.md")
    expect(panel.locator("#source-meta")).to_contain_text("characters")
    mark = panel.locator("#source-text mark")
    expect(mark).to_have_count(1)
    assert mark.inner_text().strip(), "the supporting sentence is highlighted"
    expect(panel.locator("#source-scores")).to_be_hidden()  # scores on demand only
    page.get_by_label("Show retrieval scores").check()
    expect(panel.locator("#source-scores")).to_contain_text("Cosine")
    screenshot(page, "ask", full_page=True)
    ask(page, FOLLOW_UP)
    assert sent[-1]["history"][0] == {"role": "user", "content": QUESTION}, sent[-1]
    assert sent[-1]["stream"] is True
    assert_local_only(page, server)


def test_an_off_topic_question_is_refused_with_the_closest_passages(server: str, make_page: Any) -> None:
    page = make_page(server)
    page.goto("/ui/")
    use_key(page)
    page.get_by_role("button", name="New conversation").click()
    turn = ask(page, OFF_TOPIC)
    refusal = turn.locator(".refusal")
    expect(refusal).to_contain_text("do not contain the answer")
    expect(refusal.locator(".closest li").first).to_be_visible()
    expect(turn.locator("a.cite")).to_have_count(0)
    screenshot(page, "refusal", full_page=True)


def test_an_uploaded_file_is_answerable_shown_as_text_then_deleted(
    server: str, make_page: Any, tmp_path: Path
) -> None:
    path = tmp_path / "quokka-relay.txt"
    path.write_text(UPLOADED)
    page = make_page(server)
    page.goto("/ui/#documents")
    use_key(page)
    page.get_by_label("Files (PDF, HTML, Markdown, text)").set_input_files(str(path))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#uploads li")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    page.goto("/ui/#ask")
    turn = ask(page, UPLOADED_QUESTION)
    answer = turn.locator(".answer")
    assert "7712" in answer.inner_text(), answer.inner_text()
    answer.locator("a.cite[aria-label*='uploads/quokka-relay.txt']").first.click()
    panel = page.locator("#source-panel")
    expect(panel.locator("#source-meta")).to_contain_text("uploads/quokka-relay.txt")
    expect(panel.locator("#source-text")).to_contain_text("<script>alert(1)</script>")
    assert page.locator("#source-text script").count() == 0
    screenshot(page, "source", full_page=True)
    page.goto("/ui/#documents")
    row = page.locator("#docs-table tbody tr", has_text="uploads/quokka-relay.txt")
    row.get_by_role("button", name="Delete uploads/quokka-relay.txt").click()
    row.get_by_role("button", name="Confirm delete uploads/quokka-relay.txt").click()
    page.get_by_text("Deleted uploads/quokka-relay.txt").wait_for()
    expect(page.locator("#docs-table tbody tr", has_text="uploads/quokka-relay.txt")).to_have_count(0)
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert_local_only(page, server)
