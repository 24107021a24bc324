"""Helpers of the browser tests (tests/ui): Chromium's path and flags, pages that record their
requests and dialogs, screenshots saved as test artifacts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("RAG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
DOCS_IMAGES = ROOT / "docs" / "images"
ADMIN_KEY = "ui-test-admin-key-0123456789abcdef"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def open_page(browser: Any, base_url: str, viewport: dict[str, int] = DESKTOP) -> Any:
    """A page in a fresh context that records its requests and dialogs (dismissing them)."""
    context = browser.new_context(base_url=base_url, viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.requests = []  # type: ignore[attr-defined]
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("request", lambda request: page.requests.append(request.url))

    def on_dialog(dialog: Any) -> None:
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return page


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """Save ``name``.png under tests/artifacts/ui (and docs/images with RAG_UI_DOCS_IMAGES=1)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("RAG_UI_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / f"ui-{name}.png")
    print(f"screenshot: {path}")
    return path


def use_key(page: Any, key: str = ADMIN_KEY) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()
    page.get_by_text("A key is set for this tab.").wait_for()


def assert_local_only(page: Any, base_url: str) -> None:
    """Every request the page made went to the test server (no external network)."""
    outside = [u for u in page.requests if not (u.startswith(base_url) or u.startswith(("data:", "blob:")))]
    assert not outside, outside
