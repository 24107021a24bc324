"""/v1/documents: upload files (indexed by a background job), list, show and delete documents.

Uploads are streamed to disk as they arrive (never held in memory) and the body is counted while
it streams, so a client that sends more than ``server.max_upload_mb`` gets 413 as soon as the
limit is passed, Content-Length or not. Documents are named by their public id
(``api.public_ids``): ``uploads/<name>`` for uploads, sent as it is or percent-encoded, and an
opaque ``doc_<16 hex>`` for files ingested from the server's disk, whose stored id is a path.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Annotated, Any, BinaryIO
from urllib.parse import unquote

from fastapi import HTTPException, Query, Request, Response
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from api.collections import Collection
from api.deps import Caller, Reader, State, Uploader, Writer, owner_of
from api.jobs import INCOMING, UploadedFile, uploads_dir
from api.keys import Principal
from api.public_ids import UPLOAD_PREFIX, public_id, stored_id
from api.routing import CollectionRoutes, prefix_of
from api.schemas import DocumentDeleted, DocumentList, DocumentOut, ErrorBody, JobAccepted
from api.state import AppState
from rag.errors import IndexNotFoundError
from rag.metadata import MetadataError, MetadataLimits, check_metadata
from rag.units import format_mib, mib_to_bytes

router = CollectionRoutes(tags=["documents"])

MAX_FIELD_BYTES = 1024 * 1024  # the `metadata` form field
MAX_NAME_BYTES = 255
LIMIT_HINT = "server.max_upload_mb (env RAG_SERVER__MAX_UPLOAD_MB)"
# Sent with refusals that leave part of the body unread: otherwise the server would keep the
# connection alive and read (and discard) the rest of a possibly huge upload.
CLOSE = {"Connection": "close"}

WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown, expired or revoked API key."},
    403: {
        "model": ErrorBody,
        "description": "The key has no `write` grant on the collection, or no key is configured: "
        "writes are disabled.",
    },
}
# How long a client over server.max_jobs_per_key is told to wait: about one small upload's job.
JOBS_RETRY_AFTER_S = 5


@router.post(
    "/documents",
    status_code=202,
    response_model=JobAccepted,
    responses={
        **WRITE_RESPONSES,
        429: {"model": ErrorBody, "description": "The key has server.max_jobs_per_key unfinished jobs."},
        400: {"model": ErrorBody, "description": "The multipart body is malformed."},
        413: {"model": ErrorBody, "description": "The upload is over server.max_upload_mb."},
        422: {"model": ErrorBody, "description": "No files, bad file names or bad metadata."},
    },
    summary="Upload files to index (returns a job to poll)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "metadata": {
                                "type": "string",
                                "description": "JSON object keyed by file name, e.g. "
                                '{"a.pdf": {"team": "ops"}}',
                            },
                        },
                    }
                }
            },
        }
    },
)
async def upload_documents(
    request: Request, response: Response, state: State, collection: Uploader, caller: Caller
) -> JobAccepted:
    """Send `multipart/form-data` with one or more `files` parts and, optionally, a `metadata`
    field holding a JSON object keyed by file name (`{"a.pdf": {"team": "ops"}}`). Each file
    becomes the document `uploads/<name>`, the name reduced to its base name (no directories,
    leading dots or control characters; `files` shows it): uploading the same name again updates
    it. The files
    are indexed by a background job; poll `status_url` for progress and per-file errors.
    Queries keep being answered from the current index until the job commits. The first upload
    to `/v1/collections/{collection}/documents` creates that collection."""
    try:
        return await _upload(request, response, state, collection, caller)
    except BaseException:
        state.collections.forget_if_empty(collection.name)  # a refused first upload creates nothing
        raise


async def _upload(
    request: Request, response: Response, state: AppState, collection: Collection, caller: Principal | None
) -> JobAccepted:
    jobs, index_dir = collection.jobs, collection.settings.index_dir
    owner = owner_of(request, caller)
    _check_job_quota(state, owner)
    limit = mib_to_bytes(state.settings.server.max_upload_mb)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise HTTPException(413, _too_large(int(length), limit), headers=CLOSE)
    boundary = _boundary(request.headers.get("content-type", ""))
    incoming = uploads_dir(index_dir) / INCOMING / uuid.uuid4().hex
    incoming.mkdir(parents=True)
    receiver = _MultipartReceiver(boundary, incoming, limit, state.settings.server.max_upload_files)
    try:
        try:
            async for chunk in request.stream():
                await run_in_threadpool(receiver.feed, chunk)
        except HTTPException as exc:  # refused mid-body (too many files, a huge form field)
            exc.headers = {**(exc.headers or {}), **CLOSE}
            raise
        receiver.finish()
        parts = _checked(receiver.files)
        limits = MetadataLimits.from_settings(state.settings.server)
        metadata = _metadata(receiver.fields.get("metadata"), [p.filename or "" for p in parts], limits)
        with jobs.files_lock:  # no tidy between a file's arrival and its job's submission
            files = [_store(part, index_dir) for part in parts]
            job = jobs.submit(files, metadata, owner)
    except _TooLarge as exc:
        raise HTTPException(413, _too_large(exc.seen, limit, streamed=True), headers=CLOSE) from None
    except FormParserError as exc:
        raise HTTPException(400, f"malformed multipart body ({exc}); send multipart/form-data") from None
    finally:
        receiver.close()
        shutil.rmtree(incoming, ignore_errors=True)
    status_url = prefix_of(request.path_params.get("collection")) + f"/jobs/{job.id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job.id, status=job.status, status_url=status_url, files=files)


@router.get("/documents", response_model=DocumentList, summary="List indexed documents")
def list_documents(
    collection: Reader,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    # SQLite's OFFSET is a signed 64-bit integer; a larger value is a 422, not an overflow (500).
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> DocumentList:
    try:
        snapshot = collection.store.snapshot()
    except IndexNotFoundError:
        return DocumentList(index_version=None, total=0, documents=[])
    docs = snapshot.documents(limit=limit, offset=offset)
    return DocumentList(
        index_version=snapshot.version,
        total=snapshot.manifest.documents,
        documents=[_out(d) for d in docs],
    )


@router.get(
    "/documents/{doc_id:path}",
    response_model=DocumentOut,
    responses={404: {"model": ErrorBody}},
    summary="One document: source, chunks, hash, metadata",
)
def get_document(doc_id: str, collection: Reader) -> DocumentOut:
    """`doc_id` is the public id that listings, hits and citations show."""
    snapshot = collection.store.snapshot()
    stored = stored_id(snapshot, doc_id)
    doc = snapshot.document(stored) if stored is not None else None
    if doc is None:
        raise HTTPException(404, _not_found(doc_id))
    return _out(doc)


@router.delete(
    "/documents/{doc_id:path}",
    response_model=DocumentDeleted,
    responses={
        **WRITE_RESPONSES,
        404: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "An ingestion is writing; retry when it ends."},
    },
    summary="Remove a document and all its chunks",
)
def delete_document(doc_id: str, state: State, collection: Writer) -> DocumentDeleted:
    """Commits a new index version without the document; queries switch to it at once. `doc_id`
    is the public id; an uploaded document's stored file is removed too."""
    store, jobs = collection.store, collection.jobs
    store.refresh()  # the latest version, not one up to a second old
    stored = stored_id(store.snapshot(), doc_id)  # no index at all: a clear 404
    if stored is None:
        raise HTTPException(404, _not_found(doc_id))
    with store.writer(lock_timeout_s=state.settings.server.delete_lock_wait_s) as writer:
        if not writer.delete(stored):
            raise HTTPException(404, _not_found(doc_id))
        version = writer.commit().version
    store.refresh()
    if stored.startswith(UPLOAD_PREFIX):
        jobs.tidy_uploads([stored.removeprefix(UPLOAD_PREFIX)])
    return DocumentDeleted(deleted=public_id(stored), index_version=version)


# --------------------------------------------------------------------------- helpers


def _out(doc: dict[str, Any]) -> DocumentOut:
    return DocumentOut(**{**doc, "id": public_id(doc["id"])})


def _check_job_quota(state: AppState, owner: str) -> None:
    limit = state.settings.server.max_jobs_per_key
    if state.collections.unfinished_jobs(owner) >= limit:
        raise HTTPException(
            429,
            f"this key already has {limit} upload jobs queued or running (server.max_jobs_per_key, "
            "env RAG_SERVER__MAX_JOBS_PER_KEY); wait for one to finish (GET .../jobs)",
            headers={"Retry-After": str(JOBS_RETRY_AFTER_S), **CLOSE},
        )


def _not_found(doc_id: str) -> str:
    return f"no document {doc_id!r} in the index; GET /v1/documents lists the ids"


def _too_large(size: int, limit: int, streamed: bool = False) -> str:
    mb, limit_mb = format_mib(size), format_mib(limit)
    what = (
        f"over the limit of {limit_mb} (stopped reading at {mb})"
        if streamed
        else f"{mb}, over the limit of {limit_mb}"
    )
    return f"upload is {what}; split it into several uploads or raise {LIMIT_HINT}"


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise HTTPException(
            422,
            f"expected a multipart/form-data body, got {content_type or 'no Content-Type'!r}; send "
            "the files as `files` parts (curl: -F files=@report.pdf)",
            headers=CLOSE,
        )
    return boundary


class _TooLarge(Exception):
    def __init__(self, seen: int) -> None:
        self.seen = seen


class _Part:
    def __init__(self) -> None:
        self.headers: dict[str, bytes] = {}
        self.field = ""
        self.filename: str | None = None
        self.data = bytearray()  # form fields only
        self.path: Path | None = None
        self.fh: BinaryIO | None = None
        self.sha = hashlib.sha256()
        self.size = 0


class _MultipartReceiver:
    """Feeds the body through python-multipart's streaming parser: file parts go straight to
    files in ``incoming`` (hashed as they are written), form fields are kept (bounded)."""

    def __init__(self, boundary: bytes, incoming: Path, limit: int, max_files: int) -> None:
        self.incoming = incoming
        self.max_files = max_files
        self.limit = limit
        self.seen = 0
        self.files: list[_Part] = []
        self.fields: dict[str, str] = {}
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise _TooLarge(self.seen)
        self._parser.write(chunk)

    def finish(self) -> None:
        self._parser.finalize()

    def close(self) -> None:
        for part in [*self.files, self._part]:
            if part.fh is not None and not part.fh.closed:
                part.fh.close()

    def _part_begin(self) -> None:
        self._part = _Part()

    def _header_end(self) -> None:
        self._part.headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        part = self._part
        raw = part.headers.get("content-disposition", b"")
        _, options = parse_options_header(raw)
        part.field = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        star = re.search(rb"filename\*=(?:UTF-8|utf-8)''([^;]+)", raw)
        if star:
            part.filename = unquote(star.group(1).decode("ascii", "replace"))
        elif filename is not None:
            part.filename = filename.decode("utf-8", "replace")
        if part.filename is not None:
            if len(self.files) >= self.max_files:
                raise HTTPException(
                    422,
                    f"more than {self.max_files} files in one upload; split it "
                    "(server.max_upload_files, env RAG_SERVER__MAX_UPLOAD_FILES)",
                )
            part.path = self.incoming / f"{len(self.files):05d}"
            part.fh = open(part.path, "wb")  # noqa: SIM115 - closed in _part_end / close()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        piece = data[start:end]
        if part.fh is not None:
            part.fh.write(piece)
            part.sha.update(piece)
            part.size += len(piece)
        else:
            part.data.extend(piece)
            if len(part.data) > MAX_FIELD_BYTES:
                raise HTTPException(
                    413, f"form field {part.field!r} is over {format_mib(MAX_FIELD_BYTES)}; send less"
                )

    def _part_end(self) -> None:
        part = self._part
        if part.fh is not None:
            part.fh.close()
            self.files.append(part)
        else:
            self.fields[part.field] = part.data.decode("utf-8", "replace")


def _reduced_name(raw: str) -> str:
    """The last path component (``/`` or ``\\``), printable characters only, without leading dots
    or surrounding spaces: a single name that cannot be ``.``, ``..`` or hidden, so it never
    leaves uploads/<sha256>/."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in name if ch.isprintable()).lstrip(". ").rstrip(" ")


def _safe_name(raw: str) -> str:
    """``raw`` reduced to a safe base name (``../../etc/passwd`` is ``passwd``, ``C:\\x\\a.pdf`` is
    ``a.pdf``); 422 when nothing is left or it is over MAX_NAME_BYTES.

    Reduced rather than refused: browsers and SDKs may send a client-side path as the name. The
    reduced name is the document id and what the response's ``files`` shows, so the client sees
    which document it wrote; two files of one upload that reduce to the same name are refused by
    ``_checked``."""
    name = _reduced_name(raw)
    if not name:
        raise HTTPException(
            422,
            f"file name {raw!r} is empty once directories, leading dots and control characters are "
            "removed; send the file's own name, e.g. report.pdf",
        )
    if len(name.encode()) > MAX_NAME_BYTES:
        raise HTTPException(422, f"file name {name[:40]!r}... is over {MAX_NAME_BYTES} bytes; shorten it")
    return name


def _checked(parts: list[_Part]) -> list[_Part]:
    if not parts:
        raise HTTPException(
            422, "no files in the upload; send one or more `files` parts (curl: -F files=@report.pdf)"
        )
    seen: set[str] = set()
    for part in parts:
        name = _safe_name(part.filename or "")
        if name in seen:
            raise HTTPException(422, f"two files are named {name!r}; a name is a document id, rename one")
        seen.add(name)
        part.filename = name
    return parts


def _store(part: _Part, index_dir: Path) -> UploadedFile:
    """Move a received file to uploads/<sha256>/<name>: identical content lands on itself."""
    assert part.path is not None and part.filename is not None
    digest = part.sha.hexdigest()
    final = uploads_dir(index_dir) / digest / part.filename
    final.parent.mkdir(parents=True, exist_ok=True)
    part.path.replace(final)
    return UploadedFile(name=part.filename, path=final, bytes=part.size, sha256=digest)


def _metadata(raw: str | None, names: list[str], limits: MetadataLimits) -> dict[str, dict[str, Any]]:
    """The `metadata` field: a JSON object keyed by file name, each value a JSON object within
    ``limits`` (rag.metadata), so nothing stored can break a later read."""
    if raw is None or not raw.strip():
        return {}
    example = '{"' + (names[0] if names else "report.pdf") + '": {"team": "ops"}}'
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HTTPException(422, f"metadata is not valid JSON ({exc}); send e.g. {example}") from None
    except RecursionError:  # tens of thousands of levels: deeper than the parser can follow
        raise HTTPException(
            422,
            f"metadata is nested too deeply to parse; the limit is {limits.max_depth} levels per "
            "file (server.max_metadata_depth, env RAG_SERVER__MAX_METADATA_DEPTH)",
        ) from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise HTTPException(422, f"metadata must be a JSON object keyed by file name, e.g. {example}")
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise HTTPException(
            422, f"metadata names files that were not uploaded: {unknown}; uploaded: {sorted(names)}"
        )
    try:
        for name, meta in value.items():
            check_metadata(meta, limits, owner=name)
    except MetadataError as exc:
        raise HTTPException(422, str(exc)) from None
    return value
