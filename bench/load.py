"""Load test (issue 13): many clients at once against a real `rag serve` on loopback.

    flock /tmp/generator.lock .venv/bin/python bench/load.py [--clients 50] [--duration 120]
        [--answer-share 0.3] [--stalled-streams 0] [--out bench/results/load.md]

Builds an index of data/sample/docs in a temporary folder, starts `rag serve` on 127.0.0.1 with
the configured (default: the real local) generator and an admin key, waits for the generator, and
then for ``--duration`` seconds runs:

- ``--clients`` clients, each sending one request at a time with a random pause between them:
  an answer request with probability ``--answer-share`` (``/v1/query`` without the answer cache,
  so each is generated; ``/v1/chat/completions`` too, half of them, when the server has it), else
  ``/v1/search``. A 429 is honoured: the client waits its Retry-After, at most ``--max-backoff``.
- an ingest writer: uploads of ``--ingest-files`` files (sample documents under new names) through
  ``POST /v1/documents`` with the admin key, one job after another;
- a /healthz sampler every 100 ms on its own connection;
- optionally ``--stalled-streams`` streamed questions on raw sockets that are never read.

Then requests in flight get ``--drain`` seconds to finish. It reports status counts per route,
every 5xx, every 429 against the queue bound (each 429 names how many questions were waiting),
the /healthz latency percentiles, and answer latencies with their queue wait (X-Queue-Wait-Ms).
Bounded: one process, loopback only, every request with a client timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

SAMPLE_DOCS = Path("data/sample/docs")
QUESTIONS = Path("bench/data/sample_qa.jsonl")
SEARCHES = ["apt-mark hold", "tty group GID", "lock file for serial devices", "variable data in /opt"]
HEALTH_EVERY_S = 0.1  # the sampling interval
HEALTH_P99_LIMIT_MS = 200.0  # the bound on /healthz p99
UPLOAD_SUFFIXES = (".md", ".txt")  # small text documents: an ingest job of seconds, not minutes
WAITING = re.compile(r"(\d+) questions are already waiting")


@dataclass
class Record:
    route: str
    status: int  # 0: the request failed without an HTTP answer (transport error, client timeout)
    ms: float
    queue_wait_ms: float | None = None
    queue_position: int | None = None
    waiting_at_429: int | None = None
    retry_after_s: float | None = None
    error: str = ""


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    health: list[tuple[float, float, int]] = field(default_factory=list)  # (t, ms, status)
    jobs: list[dict] = field(default_factory=list)
    stalled: Counter = field(default_factory=Counter)


# --------------------------------------------------------------------------------- the server
def build_index(index: Path) -> None:
    cmd = [sys.executable, "-m", "cli", "ingest", str(SAMPLE_DOCS), "--index", str(index)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def start_server(index: Path, port: int, admin_key: str, log: Path) -> subprocess.Popen:
    # The clients all come from loopback: the per-address rate limit (server.rate_limit_per_s)
    # would turn most of the load into 429s before it reached the queue this measures.
    env = os.environ | {
        "RAG_INDEX_DIR": str(index),
        "RAG_SERVER__ADMIN_API_KEY": admin_key,
        "RAG_SERVER__RATE_LIMIT_PER_S": "0",
    }
    cmd = [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rag serve exited with {proc.returncode}; see its log")
        try:
            health = httpx.get(f"{base}/healthz", timeout=5).json()
            if health["generator"] == "ready":
                return health
            if health["generator"].startswith("error"):
                raise RuntimeError(f"generator failed: {health['generator']}")
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the server was not ready after {timeout_s} s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------- the clients
def answer_body(route: str, question: str, model: str) -> dict:
    if route == "/v1/chat/completions":
        return {"model": model, "messages": [{"role": "user", "content": question}], "cache": False}
    return {"question": question, "cache": False}


async def client_loop(
    http: httpx.AsyncClient,
    rng: random.Random,
    args: argparse.Namespace,
    routes: list[str],
    model: str,
    end: float,
    run: Run,
) -> None:
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    while time.monotonic() < end:
        if rng.random() < args.answer_share:
            route = rng.choice(routes)
            body = answer_body(route, rng.choice(questions), model)
        else:
            route, body = "/v1/search", {"query": rng.choice(SEARCHES + questions), "top_k": 5}
        record = await timed_post(http, route, body, args.request_timeout)
        run.records.append(record)
        pause = rng.uniform(0, args.think)
        if record.status == 429:
            pause = min(args.max_backoff, record.retry_after_s or args.max_backoff)
        await asyncio.sleep(pause)


async def timed_post(http: httpx.AsyncClient, route: str, body: dict, timeout_s: float) -> Record:
    t0 = time.perf_counter()
    try:
        r = await http.post(route, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Record(route, 0, (time.perf_counter() - t0) * 1000, error=f"{type(exc).__name__}: {exc}")
    ms = (time.perf_counter() - t0) * 1000
    record = Record(route, r.status_code, ms)
    if "X-Queue-Wait-Ms" in r.headers:
        record.queue_wait_ms = float(r.headers["X-Queue-Wait-Ms"])
        record.queue_position = int(r.headers["X-Queue-Position"])
    if r.status_code == 429:
        found = WAITING.search(r.text)
        record.waiting_at_429 = int(found.group(1)) if found else None
        record.retry_after_s = float(r.headers.get("Retry-After", "nan"))
    elif r.status_code >= 500:
        record.error = r.text[:300]
    return record


async def health_sampler(base: str, end: float, run: Run) -> None:
    """GET /healthz every 100 ms (fixed schedule: a slow answer is followed at once by the next)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:  # /healthz needs no key
        t_next = time.monotonic()
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                status = (await http.get("/healthz")).status_code
            except httpx.HTTPError:
                status = 0
            run.health.append((time.monotonic(), (time.perf_counter() - t0) * 1000, status))
            t_next += HEALTH_EVERY_S
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))


def upload_files(round_no: int, n: int) -> list[tuple[str, tuple[str, bytes]]]:
    """``n`` sample documents under new names, each with a line naming the round, so every job
    embeds new chunks instead of finding them unchanged."""
    sources = sorted(p for p in SAMPLE_DOCS.iterdir() if p.suffix in UPLOAD_SUFFIXES)
    files = []
    for i in range(n):
        src = sources[i % len(sources)]
        text = src.read_bytes() + f"\n\nLoad-test upload, round {round_no}, copy {i}.\n".encode()
        files.append(("files", (f"load-{i}-{src.name}", text)))
    return files


async def ingest_writer(base: str, admin_key: str, args: argparse.Namespace, end: float, run: Run) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as http:
        round_no = 0
        while time.monotonic() < end:
            t0 = time.monotonic()
            r = await http.post("/v1/documents", files=upload_files(round_no, args.ingest_files))
            run.records.append(Record("POST /v1/documents", r.status_code, (time.monotonic() - t0) * 1000))
            if r.status_code != 202:
                await asyncio.sleep(1)
                continue
            job = await wait_job(http, r.json()["job_id"])
            run.jobs.append(job | {"seconds_total": round(time.monotonic() - t0, 2)})
            round_no += 1


async def wait_job(http: httpx.AsyncClient, job_id: str) -> dict:
    while True:
        job = (await http.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.5)


async def stalled_streams(base: str, n: int, end: float, run: Run) -> None:
    """``n`` streamed questions whose responses are never read, held open until the end."""
    url = httpx.URL(base)
    writers = []
    for i in range(n):
        body = json.dumps(
            {"question": f"Which command puts a package on hold? ({i})", "stream": True}
        ).encode()
        head = (
            f"POST /v1/query HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        _, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(head + body)
        await writer.drain()
        writers.append(writer)
        run.stalled["opened"] += 1
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    for writer in writers:
        writer.close()


async def drive(base: str, admin_key: str, args: argparse.Namespace) -> tuple[Run, list[str], float]:
    run = Run()
    paths = httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"]
    routes = ["/v1/query"] + (["/v1/chat/completions"] if "/v1/chat/completions" in paths else [])
    auth = {"Authorization": f"Bearer {admin_key}"}  # once a key exists, reads need one too
    models = httpx.get(f"{base}/v1/models", timeout=10, headers=auth) if len(routes) > 1 else None
    model = models.json()["data"][0]["id"] if models is not None else ""
    limits = httpx.Limits(max_connections=args.clients + 10, max_keepalive_connections=args.clients + 10)
    t_start = time.monotonic()
    end = t_start + args.duration
    async with httpx.AsyncClient(base_url=base, limits=limits, headers=auth) as http:
        clients = [
            client_loop(http, random.Random(args.seed + i), args, routes, model, end, run)
            for i in range(args.clients)
        ]
        sampler = asyncio.create_task(health_sampler(base, end + args.drain, run))
        background = [
            ingest_writer(base, admin_key, args, end, run),
            stalled_streams(base, args.stalled_streams, end, run),
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*clients, *background), timeout=args.duration + args.drain)
        except TimeoutError:
            run.stalled["cut at the end of the drain"] += 1
        sampler.cancel()
    return run, routes, time.monotonic() - t_start


# --------------------------------------------------------------------------------- the report
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def report(
    run: Run, routes: list[str], wall_s: float, args: argparse.Namespace, bound: int, meta: dict
) -> str:
    by_route: dict[str, list[Record]] = defaultdict(list)
    for r in run.records:
        by_route[r.route].append(r)
    lines = [
        "# Load test (`bench/load.py`)",
        "",
        f"Command: `{meta['command']}`",
        f"Date: {meta['date']} (UTC); machine: {meta['machine']}; load average before the start: "
        f"{meta['load']}.",
        f"Server: `rag serve` on 127.0.0.1, generator `{meta['generator']}`, "
        f"`server.max_waiting_questions` {bound}, `server.request_timeout_s` {meta['request_timeout_s']:g}.",
        f"Clients: {args.clients} for {args.duration:g} s (then up to {args.drain:g} s to drain; wall "
        f"{wall_s:.0f} s), answer share {args.answer_share:g} over {', '.join(routes)} (answer cache off), "
        f"pauses 0-{args.think:g} s, 429 honoured up to {args.max_backoff:g} s; ingest: "
        f"{args.ingest_files} files per upload job, back to back; stalled (never read) streams: "
        f"{args.stalled_streams}.",
        "",
        "| route | requests | 2xx | 429 | other 4xx | 5xx | no answer | p50 ms (2xx) | p95 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for route, recs in sorted(by_route.items()):
        ms = [r.ms for r in recs if 200 <= r.status < 300]
        st = Counter(r.status // 100 for r in recs)
        n429 = sum(r.status == 429 for r in recs)
        lines.append(
            f"| {route} | {len(recs)} | {st[2]} | {n429} | {st[4] - n429} | {st[5]} | {st[0]} | "
            f"{pct(ms, 50):.0f} | {pct(ms, 95):.0f} | {max(ms, default=float('nan')):.0f} |"
        )
    health_ms = [ms for _, ms, _ in run.health]
    health_bad = sum(status != 200 for _, _, status in run.health)
    p99 = pct(health_ms, 99)
    lines += [
        "",
        "| /healthz, sampled every 100 ms | samples | p50 ms | p95 ms | p99 ms | max ms | not 200 |",
        "|---|---|---|---|---|---|---|",
        f"| whole run | {len(health_ms)} | {pct(health_ms, 50):.1f} | {pct(health_ms, 95):.1f} | {p99:.1f} | "
        f"{max(health_ms, default=float('nan')):.1f} | {health_bad} |",
    ]
    lines += answer_lines(run, routes) + ingest_lines(run) + verdict_lines(run, bound, p99, health_bad)
    return "\n".join(lines) + "\n"


def answer_lines(run: Run, routes: list[str]) -> list[str]:
    answered = [r for r in run.records if r.route in routes and r.status == 200]
    waits = [r.queue_wait_ms for r in answered if r.queue_wait_ms is not None]
    positions = [r.queue_position for r in answered if r.queue_position is not None]
    ms = [r.ms for r in answered]
    return [
        "",
        f"Answers (200): {len(answered)}; latency p50 {pct(ms, 50) / 1000:.1f} s, "
        f"p95 {pct(ms, 95) / 1000:.1f} s, max {max(ms, default=float('nan')) / 1000:.1f} s; "
        "of which waiting for the generator "
        f"(X-Queue-Wait-Ms) p50 {pct(waits, 50) / 1000:.1f} s, p95 {pct(waits, 95) / 1000:.1f} s; "
        f"queue position on arrival (X-Queue-Position) max {max(positions, default=0)}.",
    ]


def ingest_lines(run: Run) -> list[str]:
    done = Counter(job["status"] for job in run.jobs)
    seconds = [job["seconds_total"] for job in run.jobs]
    chunks = sum((job.get("summary") or {}).get("chunks_embedded", 0) for job in run.jobs)
    return [
        "",
        f"Ingest jobs: {len(run.jobs)} finished ({dict(done)}), {chunks} chunks embedded; upload to commit "
        f"p50 {pct(seconds, 50):.1f} s, max {max(seconds, default=float('nan')):.1f} s.",
    ]


def verdict_lines(run: Run, bound: int, p99: float, health_bad: int) -> list[str]:
    five = [r for r in run.records if r.status >= 500]
    too_many = [r for r in run.records if r.status == 429]
    early = [r for r in too_many if r.waiting_at_429 is None or r.waiting_at_429 < bound]
    failed = [r for r in run.records if r.status == 0]
    lines = [
        "",
        "| check | result |",
        "|---|---|",
        f"| no 5xx | {'yes' if not five else 'NO'}: {len(five)} |",
        f"| 429 only beyond the queue bound ({bound} waiting) | {'yes' if not early else 'NO'}: "
        f"{len(too_many)} 429s, {len(early)} with fewer than {bound} waiting |",
        f"| /healthz p99 < {HEALTH_P99_LIMIT_MS:.0f} ms, always 200 | "
        f"{'yes' if p99 < HEALTH_P99_LIMIT_MS and not health_bad else 'NO'}: p99 {p99:.1f} ms, "
        f"{health_bad} not 200 |",
        f"| every request answered | {'yes' if not failed else 'NO'}: {len(failed)} without an HTTP answer |",
    ]
    for r in (five + failed)[:5]:
        lines.append(f"\n- {r.route} {r.status}: {r.error}")
    return lines


# --------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument(
        "--drain", type=float, default=240.0, help="seconds for requests in flight at the end"
    )
    parser.add_argument(
        "--answer-share", type=float, default=0.3, help="share of requests that ask for an answer"
    )
    parser.add_argument(
        "--think", type=float, default=1.0, help="longest pause between a client's requests (s)"
    )
    parser.add_argument(
        "--max-backoff", type=float, default=5.0, help="longest wait honoured after a 429 (s)"
    )
    parser.add_argument("--request-timeout", type=float, default=600.0, help="client timeout per request (s)")
    parser.add_argument("--ingest-files", type=int, default=3)
    parser.add_argument("--stalled-streams", type=int, default=0)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/load.md"))
    args = parser.parse_args()

    meta = {
        "command": " ".join(["flock /tmp/generator.lock .venv/bin/python", *sys.argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    admin_key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="rag-load-") as tmp:
        index, port = Path(tmp) / "index", free_port()
        build_index(index)
        proc = start_server(index, port, admin_key, Path(tmp) / "server.log")
        base = f"http://127.0.0.1:{port}"
        try:
            health = wait_ready(base, proc, args.ready_timeout)
            meta |= _server_settings()
            run, routes, wall_s = asyncio.run(drive(base, admin_key, args))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log_tail = (Path(tmp) / "server.log").read_text()[-2000:]
    text = report(run, routes, wall_s, args, health["queue"]["max_waiting"], meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    if any(r.status >= 500 for r in run.records):
        print("server log (end):\n" + log_tail)


def _server_settings() -> dict:
    """What the report says about the server: read from the same settings it loaded."""
    from rag.config import load_settings

    settings = load_settings()
    generator = settings.generator
    return {
        "generator": f"{generator.backend}:{generator.model}",
        "request_timeout_s": settings.server.request_timeout_s,
    }


if __name__ == "__main__":
    main()
