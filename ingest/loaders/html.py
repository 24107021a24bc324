"""HTML (.html, .htm) through BeautifulSoup + lxml: the visible text, laid out in lines and
paragraphs as a browser would break them."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.loaders.common import SNIFF_BYTES, BytesLoader, clean_text, decode_text
from rag.types import Page

if TYPE_CHECKING:  # bs4 is imported when a page is parsed: `rag ingest` with nothing to parse
    from bs4 import BeautifulSoup, Tag  # never pays for it

_DROP_TAGS = ("script", "style", "noscript", "template", "head", "meta", "link", "iframe", "svg", "canvas")
# Elements that end a paragraph (blank line) vs. ones that only end a line.
_PARA_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "details", "dialog", "div",
        "dl", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "html", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "ul",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"dd", "dt", "li", "option", "tr"})
_CELL_TAGS = frozenset(("td", "th"))
_PRE_TAGS = frozenset(("pre", "textarea"))
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\n\r\f]+")  # HTML collapses ASCII whitespace only; NBSP survives
_BLANK_RUNS = re.compile(r"\n{3,}")

# Markers pushed on the walk stack; distinct objects, so they cannot collide with page text.
_PARA, _LINE, _BR, _CELL, _PRE_ON, _PRE_OFF = (object() for _ in range(6))


class HtmlLoader(BytesLoader):
    """Visible text only: scripts, styles and hidden elements would pollute retrieval."""

    suffixes = (".html", ".htm")

    def parse(self, data: bytes, path: Path) -> tuple[str, list[Page]]:
        return _html_document(data, path)


def _html_document(data: bytes, path: Path) -> tuple[str, list[Page]]:
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
    from bs4.dammit import EncodingDetector

    declared = EncodingDetector.find_declared_encoding(data[:SNIFF_BYTES], is_html=True)
    with warnings.catch_warnings():  # XHTML parsed as HTML is what we want: visible text only
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(clean_text(decode_text(data, path, declared)), "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    _drop_invisible(soup)
    text = _html_text(soup)
    if not text.strip():
        text = title  # a page with nothing but a <title> is better than no document
    return text, [Page(number=None, start=0, end=len(text))]


def _drop_invisible(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(list(_DROP_TAGS)):
        tag.decompose()
    for tag in soup.find_all(_is_hidden):
        if not tag.decomposed:  # a hidden ancestor may already have removed it
            tag.decompose()


def _is_hidden(tag: Tag) -> bool:
    return tag.has_attr("hidden") or bool(_HIDDEN_STYLE.search(str(tag.get("style") or "")))


def _html_text(soup: BeautifulSoup) -> str:
    lines = _HtmlLines()
    for item in _html_events(soup):
        lines.feed(item)
    lines.flush()
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines.lines)).strip("\n")


def _html_events(root: Tag) -> Iterator[object]:
    """Yield strings and layout markers in document order; iterative, so deep markup can't
    exhaust Python's recursion limit."""
    from bs4.element import NavigableString, PreformattedString, Tag

    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, Tag):
            stack.extend(_expand(item))
        elif isinstance(item, NavigableString) and not isinstance(item, PreformattedString):
            yield str(item)
        elif not isinstance(item, NavigableString):
            yield item


def _expand(tag: Tag) -> list[object]:
    """Children plus markers, reversed for the stack."""
    name = tag.name
    if name == "br":
        return [_BR]
    before: list[object] = []
    after: list[object] = []
    if name in _PARA_TAGS or name in _LINE_TAGS:
        marker = _PARA if name in _PARA_TAGS else _LINE
        before, after = [marker], [marker]
    elif name in _CELL_TAGS:
        before = [_CELL]
    if name in _PRE_TAGS:
        # Toggle inside the block markers so the last <pre> line is flushed with indentation kept.
        before, after = [*before, _PRE_ON], [*after, _PRE_OFF]
    return list(reversed([*before, *tag.contents, *after]))


class _HtmlLines:
    """Accumulates walk events into lines: inline whitespace collapses, <pre> keeps its own."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.pre_depth = 0

    def feed(self, item: object) -> None:
        if isinstance(item, str):
            self._text(item)
        elif item is _PRE_ON or item is _PRE_OFF:
            self.pre_depth += 1 if item is _PRE_ON else -1
        elif item is _CELL:
            if "".join(self.current).strip():
                self.current.append(" | ")
        elif item is _BR:
            self.flush(force=True)
        else:
            self.flush()
            if item is _PARA:
                self.lines.append("")

    def _text(self, text: str) -> None:
        if self.pre_depth == 0:
            self.current.append(_SPACES.sub(" ", text))
            return
        first, *rest = text.split("\n")
        self.current.append(first)
        for part in rest:
            self.flush(force=True)
            self.current.append(part)

    def flush(self, force: bool = False) -> None:
        line = "".join(self.current)
        line = line.rstrip() if self.pre_depth else line.strip()
        if line or force:
            self.lines.append(line)
        self.current = []
