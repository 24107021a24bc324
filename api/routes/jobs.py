"""GET /v1/jobs/{id}: status, progress per stage and per-file errors of an ingestion job."""

from __future__ import annotations

from fastapi import HTTPException

from api.deps import Reader, State
from api.routing import CollectionRoutes
from api.schemas import ErrorBody, JobOut

router = CollectionRoutes(tags=["documents"])


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses={404: {"model": ErrorBody}},
    summary="Progress and result of an upload job",
)
def get_job(job_id: str, collection: Reader, state: State) -> JobOut:
    """`status` goes queued → running → succeeded or failed. While running, `stage` and
    `progress` say how far parse, embed and write have got; when finished, `summary` has the
    counts and `errors` one entry per file that could not be indexed (with the reason). A job
    whose files all failed is `failed`; one with some failures `succeeded` with `errors`. Jobs
    survive a restart; one that was unfinished when the server stopped is `failed`."""
    job = collection.jobs.get(job_id)
    if job is None:
        keep = state.settings.server.keep_jobs
        raise HTTPException(
            404,
            f"no job {job_id!r}; the server keeps the last {keep} finished jobs (server.keep_jobs, "
            "env RAG_SERVER__KEEP_JOBS); GET /v1/jobs lists them",
        )
    return JobOut(**job.public())


@router.get("/jobs", response_model=list[JobOut], summary="Recent upload jobs, newest first")
def list_jobs(collection: Reader) -> list[JobOut]:
    return [JobOut(**job.public()) for job in collection.jobs.recent()]
