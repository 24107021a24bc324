"""The Ask view in Chromium without the model (fast tier): the declared scripted generator of
tests/rag/test_pipeline.py writes a fixed draft, the real embedder, index and support judge check
it, so the streamed sentences, citations and the withheld sentence are known. The real model's
answers are in test_page_answers.py (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.rag.test_pipeline import ScriptedGenerator
from tests.ui.browser import ADMIN_KEY, assert_local_only, screenshot, use_key

WEEKLY = "How long does Zephyr keep weekly and daily snapshots?"
DRAFT = [
    "Zephyr keeps daily snapshots for 14 days [1]. ",
    "Snapshots are encrypted with AES-256 by default. ",  # unsupported: never shown
    "Weekly snapshots are kept for 8 weeks [1]. ",
    "Older snapshots are pruned by zephyr prune [1].",
]


@pytest.fixture(scope="module")
def server(built_index: Any, embedder: Any) -> Iterator[str]:
    from api.app import create_app
    from rag.components import build_components
    from rag.config import load_settings
    from tests.serving import serving_in_thread

    overrides = {"server.admin_api_key": ADMIN_KEY, "server.rate_limit_per_s": 0, "cache.enabled": False}
    settings = load_settings(index_dir=built_index.index_dir, **overrides)
    components = build_components(settings, embedder=embedder, generator=ScriptedGenerator(*DRAFT))
    with serving_in_thread(create_app(settings, components=components)) as client:
        yield str(client.base_url).rstrip("/")


def test_checked_sentences_stream_in_with_citations_that_open_their_passage(
    server: str, make_page: Any
) -> None:
    page = make_page(server)
    page.goto("/ui/")
    use_key(page)
    page.get_by_label("Question").fill(WEEKLY)
    page.get_by_role("button", name="Ask", exact=True).click()
    answer = page.locator("#conversation .turn .answer").first
    expect(answer).to_have_class("answer")  # streaming finished
    text = answer.inner_text()
    assert "14 days" in text and "8 weeks" in text and "AES-256" not in text, text
    cite = answer.locator("a.cite").first
    cite.focus()
    page.keyboard.press("Enter")  # a citation opens from the keyboard
    panel = page.locator("#source-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("#source-meta")).to_contain_text("zephyr/retention.txt")
    expect(panel.locator("#source-text mark")).to_contain_text("snapshots")
    expect(panel.locator("#source-scores")).to_be_hidden()
    page.get_by_label("Show retrieval scores").check()
    expect(panel.locator("#source-scores")).to_contain_text("Keyword (BM25)")
    screenshot(page, "source-scripted", full_page=True)
    page.locator("#source-panel").press("Escape")
    expect(panel).to_be_hidden()
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#conversation .turn")).to_have_count(0)
    assert_local_only(page, server)


def test_a_follow_up_sends_the_conversation(server: str, make_page: Any) -> None:
    page = make_page(server)
    page.goto("/ui/")
    bodies: list[Any] = []
    page.on("request", lambda r: bodies.append(r.post_data_json) if r.url.endswith("/query") else None)
    use_key(page)
    for question in (WEEKLY, "And the daily ones?"):
        page.get_by_label("Question").fill(question)
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
        expect(page.locator("#conversation .turn .answer.streaming")).to_have_count(0)
    assert "history" not in bodies[0]
    assert [m["role"] for m in bodies[1]["history"]] == ["user", "assistant"]
    assert bodies[1]["history"][0]["content"] == WEEKLY
    screenshot(page, "ask-scripted", full_page=True)


def test_an_uploaded_pdf_citation_opens_the_pdf_at_its_page(
    tmp_path: Any, embedder: Any, make_page: Any
) -> None:
    """The cited page of an uploaded PDF: the page fetches the stored upload with the key and
    opens it at `#page=N`."""
    import httpx

    from api.app import create_app
    from rag.components import build_components
    from rag.config import load_settings
    from tests.conftest import PDF_PAGES, write_pdf
    from tests.serving import serving_in_thread, wait_for_job

    draft = [
        "Restored files are written to /srv/zephyr-restore [1]. ",
        "Use zephyr restore --snapshot ID [1].",
    ]
    overrides = {"server.admin_api_key": ADMIN_KEY, "server.rate_limit_per_s": 0, "cache.enabled": False}
    settings = load_settings(index_dir=tmp_path / "index", **overrides)
    components = build_components(settings, embedder=embedder, generator=ScriptedGenerator(*draft))
    write_pdf(tmp_path / "restore-guide.pdf", PDF_PAGES)
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with serving_in_thread(create_app(settings, components=components)) as client:
        files = [("files", ("restore-guide.pdf", (tmp_path / "restore-guide.pdf").read_bytes()))]
        job = client.post("/v1/documents", headers=auth, files=files).json()
        assert wait_for_job(client, job["job_id"], headers=auth)["status"] == "succeeded"
        base_url = str(client.base_url).rstrip("/")
        page = make_page(base_url)
        page.goto("/ui/")
        use_key(page)
        page.get_by_label("Question").fill("Where are restored files written?")
        page.get_by_role("button", name="Ask", exact=True).click()
        cite = page.locator("#conversation a.cite").first
        cite.click()
        expect(page.locator("#source-meta")).to_contain_text("uploads/restore-guide.pdf")
        expect(page.locator("#source-meta")).to_contain_text("2")
        with page.expect_popup() as popup:
            page.get_by_role("button", name="Open the PDF at this page").click()
        pdf = popup.value
        assert pdf.url.startswith("blob:" + base_url) and pdf.url.endswith("#page=2"), pdf.url
        pdf.wait_for_load_state()
        pdf.wait_for_timeout(1500)  # the viewer draws the page after the load event
        screenshot(pdf, "pdf-page")
        assert httpx.get(base_url + "/v1/files/uploads/restore-guide.pdf", headers=auth).status_code == 200
