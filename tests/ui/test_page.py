"""The web page in headless Chromium without the generator (fast tier): the page and its headers,
the key rule, documents (upload with progress, job stages, delete, index counts), a document's
`<script>` shown as text, evaluations (list, report, comparison), phone width, no outside requests.

One in-process server for the module: the session's embedder, a fresh index, an admin key, a
remote generator where nothing listens (questions that reach generation would get 502; the ones
asked here are refused before it), and a runs directory with two `rag eval` outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.ui.browser import ADMIN_KEY, PHONE, assert_local_only, screenshot, use_key

SCRIPT_DOC = "Zebra care notes.\n<script>alert(1)</script>\nZebras graze on tall grass in the morning.\n"
OFF_TOPIC = "Which TCP port does a mail transfer agent use for submission?"


def write_run(folder: Path, faithfulness: float, relevance: float) -> None:
    """A small but real `rag eval` output (results.json, results.csv, report.html)."""
    from eval.report import build_results, write_outputs
    from eval.runner import aggregate

    records = [
        {
            "key": f"k{i}",
            "question": f"question {i} <b>not bold</b>?",
            "answer": "an answer",
            "refused": False,
            "metrics": {"faithfulness": faithfulness, "answer_relevance": relevance},
            "statements": [],
            "contexts": [],
        }
        for i in range(3)
    ]
    config = {"dataset": "labels.jsonl", "judge": "nli"}
    write_outputs(folder, build_results(records, aggregate(records), config, None))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[str]:
    from api.app import create_app
    from rag.components import build_components
    from rag.config import load_settings
    from tests.serving import serving_in_thread

    root = tmp_path_factory.mktemp("ui")
    runs = root / "runs"
    write_run(runs / "2026-12-01-baseline", 0.72, 0.61)
    write_run(runs / "2026-12-02-hybrid", 0.81, 0.64)
    settings = load_settings(
        index_dir=root / "index",
        **{
            "server.admin_api_key": ADMIN_KEY,
            "server.eval_runs_dir": str(runs),
            "server.rate_limit_per_s": 0,
            "generator.backend": "openai",
            "generator.base_url": "http://127.0.0.1:9/v1",
        },
    )
    components = build_components(settings, embedder=embedder)
    with serving_in_thread(create_app(settings, components=components)) as client:
        yield str(client.base_url).rstrip("/")


def test_the_page_loads_without_a_key_with_a_strict_csp(server: str) -> None:
    r = httpx.get(server + "/ui/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "<script>" not in r.text and '<script src="/ui/app.js" defer></script>' in r.text
    assert httpx.get(server + "/", follow_redirects=False).headers["location"] == "/ui/"
    assert httpx.get(server + "/v1/documents").status_code == 401  # the API still needs the key
    assert "/ui/" not in httpx.get(server + "/openapi.json").text


def test_documents_need_a_key_typed_into_the_page(server: str, make_page: Any) -> None:
    page = make_page(server)
    page.goto("/ui/#documents")
    page.get_by_text("Managing documents needs an admin").wait_for()
    assert page.locator("#docs-body").is_hidden()
    use_key(page)
    page.locator("#docs-body").wait_for()
    assert ADMIN_KEY not in page.url
    stored = page.evaluate("sessionStorage.getItem('rag.apiKey')")
    assert stored == ADMIN_KEY
    assert page.evaluate("localStorage.length") == 0


def test_upload_shows_progress_stages_and_deletes(server: str, make_page: Any, tmp_path: Path) -> None:
    files = []
    for name, text in {
        "runbook.md": "# Runbook\nRestart the quokka service with quokkactl restart.\n",
        "broken.pdf": "not a pdf",
    }.items():
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    page = make_page(server)
    page.goto("/ui/#documents")
    use_key(page)
    page.get_by_label("Files (PDF, HTML, Markdown, text)").set_input_files(files)
    page.get_by_role("button", name="Upload", exact=True).click()
    uploads = page.locator("#uploads li")
    expect(page.locator("#uploads li[data-status]")).to_have_count(2, timeout=60_000)
    assert uploads.nth(0).get_attribute("data-status") == "succeeded"
    assert uploads.nth(0).locator("progress").evaluate("p => p.value") == 1
    assert "parse 1/1" in uploads.nth(0).inner_text() and "write" in uploads.nth(0).inner_text()
    assert uploads.nth(1).get_attribute("data-status") == "failed"
    assert "corrupt or unreadable PDF" in uploads.nth(1).locator(".file-error").first.inner_text()
    row = page.locator("#docs-table tbody tr", has_text="uploads/runbook.md")
    row.wait_for()
    page.locator("#index-info").get_by_text("Version").wait_for()
    screenshot(page, "documents", full_page=True)
    delete = row.get_by_role("button", name="Delete uploads/runbook.md")
    delete.click()
    row.get_by_role("button", name="Confirm delete uploads/runbook.md").click()
    page.get_by_text("Deleted uploads/runbook.md").wait_for()
    expect(page.locator("#docs-table tbody tr", has_text="uploads/runbook.md")).to_have_count(0)
    assert_local_only(page, server)


def test_a_documents_script_shows_as_text_and_never_runs(server: str, make_page: Any, tmp_path: Path) -> None:
    """In its own collection, so the refusal's closest passage is the document with <script>."""
    (tmp_path / "zebras.txt").write_text(SCRIPT_DOC)
    page = make_page(server)
    page.goto("/ui/#documents")
    use_key(page)
    page.get_by_label("Collection").fill("xss")
    page.get_by_label("Collection").dispatch_event("change")
    page.get_by_label("Files (PDF, HTML, Markdown, text)").set_input_files(str(tmp_path / "zebras.txt"))
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_selector("#uploads li[data-status='succeeded']")
    page.goto("/ui/#ask")
    page.get_by_label("Question").fill(OFF_TOPIC)
    page.get_by_role("button", name="Ask", exact=True).click()
    refusal = page.locator(".refusal")
    refusal.wait_for()
    excerpt = refusal.locator(".excerpt").first
    excerpt.wait_for()
    assert "<script>alert(1)</script>" in excerpt.inner_text()  # shown as text
    assert page.locator("#conversation script").count() == 0  # no element made from it
    screenshot(page, "refusal-script", full_page=True)
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert_local_only(page, server)


def test_evaluations_list_open_a_report_and_compare(server: str, make_page: Any) -> None:
    page = make_page(server)
    page.goto("/ui/#evaluations")
    use_key(page)
    page.get_by_text("2 evaluation runs.").wait_for()
    page.get_by_role("button", name="Open the report of 2026-12-02-hybrid").click()
    frame = page.frame_locator("#report-frame")
    frame.get_by_text("question 1 <b>not bold</b>?").first.wait_for()
    page.get_by_role("button", name="Compare").click()
    row = page.locator("#compare-table tbody tr", has_text="faithfulness")
    assert row.locator("td").all_inner_texts() == ["0.720", "0.810", "+0.090"]
    screenshot(page, "evaluations", full_page=True)
    assert page.dialogs == []  # type: ignore[attr-defined]
    assert_local_only(page, server)


def test_evaluations_say_how_to_enable_them(tmp_path: Path, embedder: Any, make_page: Any) -> None:
    from api.app import create_app
    from rag.components import build_components
    from rag.config import load_settings
    from tests.serving import serving_in_thread

    settings = load_settings(
        index_dir=tmp_path / "index",
        **{"generator.backend": "openai", "generator.base_url": "http://127.0.0.1:9/v1"},
    )
    app = create_app(settings, components=build_components(settings, embedder=embedder))
    with serving_in_thread(app) as client:
        page = make_page(str(client.base_url).rstrip("/"))
        page.goto("/ui/#evaluations")
        page.get_by_text("set server.eval_runs_dir").wait_for()


def test_phone_width_and_keyboard(server: str, make_page: Any) -> None:
    page = make_page(server, viewport=PHONE)
    page.goto("/ui/")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px screen"
    page.keyboard.press("Tab")  # the skip link first
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_label("Question").focus()
    page.keyboard.type("hello")
    assert page.get_by_label("Question").input_value() == "hello"
    for control in page.locator("input, textarea, select").all():  # every control has a label
        assert control.evaluate("c => c.labels.length > 0 || !!c.getAttribute('aria-label')")
    screenshot(page, "phone")


def test_an_uploaded_pdf_is_served_for_its_cited_page(server: str, tmp_path: Path) -> None:
    """GET .../files/uploads/<name>.pdf: the stored upload, with a read grant; nothing else."""
    from tests.conftest import write_pdf
    from tests.serving import wait_for_job

    pdf = tmp_path / "guide.pdf"
    write_pdf(pdf, ["Page one about wombats.", "Page two about burrows."])
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server, timeout=60) as client:
        r = client.post(
            "/v1/collections/pdfs/documents",
            headers=auth,
            files=[("files", ("guide.pdf", pdf.read_bytes())), ("files", ("notes.md", b"# Notes\nwombats"))],
        )
        assert r.status_code == 202, r.text
        job = wait_for_job(client, r.json()["job_id"], collection="pdfs", headers=auth)
        assert job["status"] == "succeeded", job
        got = client.get("/v1/collections/pdfs/files/uploads/guide.pdf", headers=auth)
        assert got.status_code == 200 and got.content == pdf.read_bytes()
        assert got.headers["content-type"] == "application/pdf"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert client.get("/v1/collections/pdfs/files/uploads/guide.pdf").status_code == 401
        assert client.get("/v1/collections/pdfs/files/uploads/notes.md", headers=auth).status_code == 404
        assert client.get("/v1/collections/pdfs/files/uploads/../keys.json", headers=auth).status_code == 404
        assert client.get("/v1/files/uploads/guide.pdf", headers=auth).status_code == 404  # other collection
