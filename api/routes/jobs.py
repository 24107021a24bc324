"""GET /v1/jobs/{id}: status, progress per stage and per-file errors of an ingestion job."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.deps import Jobs
from api.jobs import KEEP_JOBS
from api.schemas import ErrorBody, JobOut

router = APIRouter(tags=["documents"])


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobOut,
    responses={404: {"model": ErrorBody}},
    summary="Progress and result of an upload job",
)
def get_job(job_id: str, jobs: Jobs) -> JobOut:
    """`status` goes queued → running → succeeded or failed. While running, `stage` and
    `progress` say how far parse, embed and write have got; when finished, `summary` has the
    counts and `errors` one entry per file that could not be indexed (with the reason). A job
    whose files all failed is `failed`; one with some failures `succeeded` with `errors`."""
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(
            404,
            f"no job {job_id!r}; jobs are kept in memory for the server's lifetime (the last {KEEP_JOBS})",
        )
    return JobOut(**job.public())


@router.get("/v1/jobs", response_model=list[JobOut], summary="Recent upload jobs, newest first")
def list_jobs(jobs: Jobs) -> list[JobOut]:
    return [JobOut(**job.public()) for job in jobs.recent()]
