"""The web page: static files under /ui/ (api/static, no build step), `/` pointing at it, and the
evaluation runs it lists (GET /v1/eval/runs, GET /v1/eval/runs/{name}/report).

An uploaded PDF can be opened at a cited page: GET /v1/files/uploads/<name>.pdf (per
collection, `read`) serves the stored upload the indexed document was built from, PDFs only.

The page needs no key to load: it holds no data and no secret. Every API call it makes sends the
key the user typed into it (kept in the tab's sessionStorage, never in a URL), so the API's own
rules decide what it may read or change. A Content-Security-Policy keeps the page to its own
files: scripts only from /ui/ (none inline), requests only to this server, no frames of it
elsewhere. Document text is data: the script sets it with textContent, never as HTML.

None of these routes is in the OpenAPI schema: they are the page's, not the API's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from api.deps import Caller, Reader, State
from api.jobs import stored_files
from api.keys import ALL, Principal
from api.public_ids import UPLOAD_PREFIX
from api.routing import CollectionRoutes
from ingest.loaders import file_fingerprint

STATIC_DIR = Path(__file__).parent / "static"
UI_PATH = "/ui"
RESULTS = "results.json"
REPORT = "report.html"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The page's policy. 'unsafe-inline' for styles only: an evaluation report (eval/report.py) is
# one self-contained file with its CSS inline, shown in a sandboxed frame made from a blob: URL,
# which inherits this policy. Scripts never run inline, nor from anywhere but /ui/.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-src blob:; object-src blob:; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# A report opened directly: styles and its inline SVG, nothing that runs.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
NOT_ENABLED = (
    "no evaluation runs directory is configured; set server.eval_runs_dir (env "
    "RAG_SERVER__EVAL_RUNS_DIR) to a folder holding `rag eval --out` folders and restart the server"
)


class PageFiles(StaticFiles):
    """StaticFiles whose every response carries the page's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    """The page lives under /ui/ so its files never shadow an API path."""
    return RedirectResponse(f"{UI_PATH}/", status_code=307)


@router.get("/v1/eval/runs")
def list_runs(state: State, caller: Caller) -> dict[str, Any]:
    """The runs under server.eval_runs_dir, newest first, each with its metric means (enough for
    the page's side-by-side table); `enabled` false with how to enable it when none is set."""
    runs_dir = _runs_dir(state, caller)
    if runs_dir is None:
        return {"enabled": False, "message": NOT_ENABLED, "runs": []}
    runs = [run for d in _children(runs_dir) if (run := _summary(d)) is not None]
    runs.sort(key=lambda r: r["created"] or "", reverse=True)
    return {"enabled": True, "message": None, "runs": runs}


@router.get("/v1/eval/runs/{name}/report")
def run_report(name: str, state: State, caller: Caller) -> HTMLResponse:
    """One run's report.html, as `rag eval` wrote it (autoescaped, no scripts)."""
    runs_dir = _runs_dir(state, caller)
    if runs_dir is None:
        raise HTTPException(404, NOT_ENABLED)
    path = _run_dir(runs_dir, name) / REPORT
    if not path.is_file():
        raise HTTPException(404, f"no evaluation run {name!r} with a {REPORT}; GET /v1/eval/runs lists them")
    headers = {"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(path.read_text(encoding="utf-8"), headers=headers)


files = CollectionRoutes(include_in_schema=False)


@files.get("/files/{doc_id:path}")
def document_file(doc_id: str, collection: Reader) -> FileResponse:
    """The stored file of an uploaded PDF that the current index version holds (the copy its
    document was built from, found by its fingerprint): what a citation's page refers to. Files
    ingested from the server's disk are never served, nor anything but an upload's PDF."""
    problem = f"no uploaded PDF {doc_id!r} in the index; only uploaded PDFs can be opened"
    if not doc_id.startswith(UPLOAD_PREFIX) or not doc_id.lower().endswith(".pdf"):
        raise HTTPException(404, problem)
    fingerprints = collection.store.snapshot().file_hashes(UPLOAD_PREFIX)
    if doc_id not in fingerprints:
        raise HTTPException(404, problem)
    name = doc_id.removeprefix(UPLOAD_PREFIX)
    copies = [p for p in stored_files(collection.settings.index_dir) if p.name == name]
    wanted = fingerprints[doc_id]
    matching = [p for p in copies if wanted is not None and file_fingerprint(p) == wanted]
    if not matching:
        raise HTTPException(404, problem)
    # application/pdf and nosniff: the browser's PDF viewer shows it, nothing runs as a page.
    return FileResponse(
        matching[0],
        media_type="application/pdf",
        filename=name,
        content_disposition_type="inline",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _runs_dir(state: State, caller: Principal | None) -> Path | None:
    """The configured folder, once the caller may read every collection: a run's samples hold
    questions, answers and passages from whichever collection it was run on."""
    if caller is not None and not caller.allows(ALL, "read"):
        raise HTTPException(403, "this API key has no 'read' grant on every collection ('*:read')")
    configured = state.settings.server.eval_runs_dir
    return Path(configured) if configured is not None else None


def _children(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    return [d for d in runs_dir.iterdir() if d.is_dir() and RUN_NAME.fullmatch(d.name)]


def _run_dir(runs_dir: Path, name: str) -> Path:
    """``runs_dir/name`` for a plain folder name only: no separators, no dots first, so a name
    can never leave the runs directory."""
    if not RUN_NAME.fullmatch(name):
        raise HTTPException(404, f"no evaluation run {name!r}; GET /v1/eval/runs lists them")
    return runs_dir / name


def _summary(run: Path) -> dict[str, Any] | None:
    """What the page lists of one run, from its results.json; None for a folder that is no run."""
    try:
        results = json.loads((run / RESULTS).read_text(encoding="utf-8"))
        agg = results["aggregates"]
        metrics = {m: v.get("mean") for m, v in agg.get("metrics", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return {
        "name": run.name,
        "created": results.get("created"),
        "samples": agg.get("n_samples"),
        "refused": agg.get("n_refused"),
        "errors": agg.get("n_errors"),
        "metrics": metrics,
        "has_report": (run / REPORT).is_file(),
    }


def mount(app: FastAPI) -> None:
    """The page's files at /ui/, `/` redirecting there, the runs routes and uploaded PDFs."""
    app.include_router(router)
    app.include_router(files.default)
    app.include_router(files.scoped)
    app.mount(UI_PATH, PageFiles(directory=STATIC_DIR, html=True), name="ui")
