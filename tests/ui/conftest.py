"""Browser tests of the web page (api/static): real headless Chromium (Debian's `chromium`,
installed by scripts/setup.sh) driven by Playwright for Python, against the real app on loopback.

Every page records the requests it makes (`page.requests`, all must stay on the test server) and
the dialogs that open (`page.dialogs`, none may: a document's `<script>alert(1)</script>` must not
run). Screenshots go to tests/artifacts/ui/ (git-ignored); with RAG_UI_DOCS_IMAGES=1 they are
copied to docs/images/ too, which is how the README's pictures are made.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, open_page


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for the session (each test gets its own context: no shared storage)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: bash scripts/setup.sh installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def make_page(browser: Any) -> Iterator[Any]:
    """``make_page(base_url, viewport=...)``; every page is closed after the test."""
    pages: list[Any] = []

    def make(base_url: str, viewport: dict[str, int] = DESKTOP) -> Any:
        page = open_page(browser, base_url, viewport)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.context.close()
