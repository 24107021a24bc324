"""Check bench/data/sample_qa.jsonl against the sample corpus in data/sample/docs.

Run from the repository root:  .venv/bin/python bench/data/check_sample_qa.py [path.jsonl]

For every line it checks the schema (id, question, answerable, and either answer/expect/source/
page/passage or topic_source/why), that each "passage" occurs verbatim in the named file (the PDF:
on the named 1-based page) after collapsing whitespace to single spaces, and that each "expect"
string occurs, case-insensitively, in the passage or the answer. It also checks the coverage the
set promises (>= 48 answerable, >= 3 per file, >= 10 from the PDF, >= 12 unanswerable).
Documents are read as plain text (.md, .txt), HTML via BeautifulSoup get_text, PDF via pypdf page
by page. A passage found in more than one file is reported as a warning (ambiguous retrieval
target), not an error. Prints a per-file summary; exits 1 if anything is wrong.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from collections import Counter
from pathlib import Path

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "data" / "sample" / "docs"
QA = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "data" / "sample_qa.jsonl"
MIN_ANSWERABLE, MIN_PER_FILE, MIN_PDF, MIN_UNANSWERABLE = 48, 3, 10, 12


def norm(text: str) -> str:
    return " ".join(text.split())


def load_docs() -> dict[str, list[str]]:
    """file name -> normalised text per page (one entry for non-PDF files)."""
    docs: dict[str, list[str]] = {}
    warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)  # the FAQ pages are XHTML
    for path in sorted(DOCS.iterdir()):
        if path.suffix == ".pdf":
            docs[path.name] = [norm(p.extract_text() or "") for p in PdfReader(path).pages]
        elif path.suffix in (".html", ".htm"):
            docs[path.name] = [norm(BeautifulSoup(path.read_bytes(), "lxml").get_text())]
        else:
            docs[path.name] = [norm(path.read_text(encoding="utf-8"))]
    return docs


def check_item(
    n: int, item: dict, docs: dict[str, list[str]], errors: list[str], warnings: list[str]
) -> None:
    def err(msg: str) -> None:
        errors.append(f"line {n} ({item.get('id')}): {msg}")

    if item.get("id") != f"q{n:02d}":
        err(f"id should be q{n:02d}")
    if not isinstance(item.get("question"), str) or not item["question"].strip():
        err("question missing")
    if not isinstance(item.get("answerable"), bool):
        err("answerable must be true or false")
        return
    if not item["answerable"]:
        if item.get("topic_source") not in docs:
            err(f"topic_source {item.get('topic_source')!r} is not a file in {DOCS}")
        if not isinstance(item.get("why"), str) or not item["why"].strip():
            err("why missing")
        for key in ("answer", "expect", "source", "page", "passage"):
            if key in item:
                err(f"unanswerable item has {key!r}")
        return
    source, page, passage, answer = (
        item.get("source"),
        item.get("page"),
        item.get("passage"),
        item.get("answer"),
    )
    if not isinstance(answer, str) or not answer.strip():
        err("answer missing")
        answer = ""
    expect = item.get("expect")
    if not (
        isinstance(expect, list)
        and 1 <= len(expect) <= 3
        and all(isinstance(e, str) and e.strip() for e in expect)
    ):
        err("expect must be a list of 1-3 non-empty strings")
        expect = []
    if source not in docs:
        err(f"source {source!r} is not a file in {DOCS}")
        return
    if not isinstance(passage, str):
        err("passage missing")
        return
    words = len(passage.split())
    if not 10 <= words <= 40:
        err(f"passage has {words} words (want 10-40)")
    if passage != norm(passage):
        err("passage is not whitespace-normalised")
    pages = docs[source]
    if source.endswith(".pdf"):
        if not (isinstance(page, int) and 1 <= page <= len(pages)):
            err(f"page must be 1..{len(pages)} for a PDF, got {page!r}")
            return
        if norm(passage) not in pages[page - 1]:
            found = [i + 1 for i, text in enumerate(pages) if norm(passage) in text]
            err(
                f"passage not on page {page}"
                + (f" (found on page(s) {found})" if found else " (nowhere in the PDF)")
            )
    else:
        if page is not None:
            err("page must be null for a non-PDF source")
        if norm(passage) not in pages[0]:
            err(f"passage not found in {source}")
    for e in expect:
        if e.lower() not in passage.lower() and e.lower() not in answer.lower():
            err(f"expect {e!r} is in neither the passage nor the answer")
    others = [
        name for name, texts in docs.items() if name != source and any(norm(passage) in t for t in texts)
    ]
    if others:
        warnings.append(f"line {n} ({item.get('id')}): passage also occurs in {others}")


def main() -> int:
    docs = load_docs()
    errors: list[str] = []
    warnings: list[str] = []
    items = []
    for n, line in enumerate(QA.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {n}: not JSON ({exc})")
            continue
        items.append(item)
        check_item(n, item, docs, errors, warnings)

    answerable = [i for i in items if i.get("answerable") is True]
    unanswerable = [i for i in items if i.get("answerable") is False]
    per_file = Counter(i.get("source") for i in answerable)
    topics = Counter(i.get("topic_source") for i in unanswerable)
    pdf_pages = sorted({i.get("page") for i in answerable if str(i.get("source")).endswith(".pdf")})
    dupes = [
        q
        for q, c in Counter(re.sub(r"\W+", " ", i.get("question", "").lower()) for i in items).items()
        if c > 1
    ]

    print(f"{len(items)} items: {len(answerable)} answerable, {len(unanswerable)} unanswerable")
    for name in docs:
        print(f"  {name:40s} answerable {per_file[name]:3d}   unanswerable {topics[name]:3d}")
    print(f"  PDF pages used: {pdf_pages}")
    if len(answerable) < MIN_ANSWERABLE:
        errors.append(f"only {len(answerable)} answerable items (want >= {MIN_ANSWERABLE})")
    if len(unanswerable) < MIN_UNANSWERABLE:
        errors.append(f"only {len(unanswerable)} unanswerable items (want >= {MIN_UNANSWERABLE})")
    for name in docs:
        if per_file[name] < MIN_PER_FILE:
            errors.append(f"{name}: only {per_file[name]} answerable items (want >= {MIN_PER_FILE})")
    pdf_count = sum(c for name, c in per_file.items() if str(name).endswith(".pdf"))
    if pdf_count < MIN_PDF:
        errors.append(f"only {pdf_count} PDF items (want >= {MIN_PDF})")
    for q in dupes:
        errors.append(f"duplicate question: {q!r}")

    for w in warnings:
        print("WARNING:", w)
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
