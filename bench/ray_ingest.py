"""Ingestion throughput on Ray (ingest.distributed) with 1, 2 and 4 workers against the local path.

Usage (heavy: run it alone on the machine):
    flock /tmp/bench.lock .venv/bin/python bench/ray_ingest.py [--rounds 2] [--replicas 1]
        [--workers 1,2,4] [--writer-chunks 20000] [--out bench/results/ray_ingest.md]

Starts its own one-node Ray cluster on loopback (``ray start --head --block`` with 4 logical CPUs,
so 4 one-CPU workers fit; stopped by its pid at the end), then, in interleaved rounds, ingests the
sample corpus (data/sample/docs; ``--replicas`` > 1 adds copies whose every line is tagged, so no
chunk text repeats and every copy is embedded) into a fresh index each time:

* ``local``: ``ingest.pipeline.ingest`` with the default settings (2 parse workers, ONNX int8 on
  every core), the single-machine path;
* ``ray-N``: the same call with ``cluster.address`` set and ``cluster.workers = N`` (one CPU, one
  inference thread each). Its time includes starting the N actors (each loads the embedder), which
  is also measured alone (``startup``), so ``steady`` = total - startup is the rate a long job runs at.

Then, without Ray, the two other numbers the scaling argument needs (docs/scale-out.md): the
single writer's rate (``--writer-chunks`` distinct chunks with random unit vectors upserted, then
committed, into a fresh index: SQLite rows, keyword terms, vector buffer, segment) and the bytes a
worker sends back per chunk (a task's pickled results / its chunks).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.distributed import IngestWorker, WorkerConfig, WorkerPool  # noqa: E402
from ingest.loaders import DEFAULT_LOADER, iter_files  # noqa: E402
from ingest.pipeline import ingest  # noqa: E402
from rag import cluster  # noqa: E402
from rag.config import Settings, load_settings  # noqa: E402
from rag.embedding import make_lazy_embedder  # noqa: E402
from rag.types import Chunk, Document, Page  # noqa: E402

SAMPLE = ROOT / "data" / "sample" / "docs"
TEXT_SUFFIXES = (".md", ".txt", ".html")


@dataclass
class Run:
    mode: str
    round: int
    seconds: float
    files: int
    chunks: int
    startup: float = 0.0

    @property
    def steady(self) -> float:
        return max(1e-9, self.seconds - self.startup)


def build_corpus(root: Path, replicas: int) -> Path:
    """The sample corpus, plus ``replicas - 1`` tagged copies of its text files (the PDF once)."""
    for path in SAMPLE.iterdir():
        shutil.copy(path, root / path.name)
    for r in range(1, replicas):
        for path in SAMPLE.iterdir():
            if path.suffix in TEXT_SUFFIXES:
                lines = path.read_text(encoding="utf-8").splitlines()
                tagged = "\n".join(f"{line} (copy {r})" if line.strip() else line for line in lines)
                (root / f"copy{r}-{path.name}").write_text(tagged + "\n", encoding="utf-8")
    return root


def start_cluster(temp: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = str(Path(sys.executable).with_name("ray"))
    cmd = [
        ray_bin,
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=4",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--object-store-memory=200000000",
        f"--temp-dir={temp}",
    ]
    # No token auth on this loopback cluster (a ~/.ray/auth_token left by another Ray would turn it
    # on for the head but not for `ray status`).
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(temp.with_suffix(".log"), "wb")  # noqa: SIM115 - open while the head runs
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while subprocess.run([ray_bin, "status", f"--address={address}"], capture_output=True).returncode:
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_cluster(proc)
            raise RuntimeError(f"the Ray head did not start; see {temp.with_suffix('.log')}")
        time.sleep(0.5)
    return proc, address


def stop_cluster(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the head's `ray start` (its own process group), then SIGKILL the group: a graceful
    stop of the raylet and GCS can take half a minute and nothing of theirs needs keeping."""
    proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def settings_for(index: Path, address: str | None, workers: int) -> Settings:
    return load_settings(index_dir=index, **{"cluster.address": address, "cluster.workers": workers or None})


def one_run(mode: str, rnd: int, corpus: Path, work: Path, address: str | None, workers: int) -> Run:
    index = work / f"index-{mode}-{rnd}"
    settings = settings_for(index, address, workers)
    embedder = make_lazy_embedder(settings.embedding)
    t = time.perf_counter()
    summary = ingest([corpus], settings, embedder)
    seconds = time.perf_counter() - t
    assert summary.failed == 0, summary
    shutil.rmtree(index)
    return Run(mode, rnd, seconds, summary.added, summary.chunks)


def startup_seconds(address: str, workers: int, work: Path) -> float:
    """Starting ``workers`` actors until each has loaded its embedder, then stopping them."""
    settings = settings_for(work / "unused", address, workers)
    t = time.perf_counter()
    with WorkerPool(settings, DEFAULT_LOADER, make_lazy_embedder(settings.embedding)):
        pass
    return time.perf_counter() - t


def writer_rate(n: int, work: Path) -> dict[str, float]:
    """The single writer alone: ``n`` distinct ~1 KB chunks with random unit vectors."""
    settings = load_settings(index_dir=work / "writer")
    embedder = make_lazy_embedder(settings.embedding)
    rng = np.random.default_rng(0)
    per_doc = 50
    from rag.components import build_store

    writer = build_store(settings).writer(embedder)
    with writer:
        t = time.perf_counter()
        for d in range(n // per_doc):
            text = " ".join(f"word{d}x{i} backup relay snapshot retention" for i in range(per_doc * 30))
            doc = Document(f"doc-{d}", f"doc-{d}.txt", text, [Page(None, 0, len(text))])
            chunks = [
                Chunk(doc.id, doc.source, None, i * 1000, (i + 1) * 1000, text[i * 1000 : (i + 1) * 1000])
                for i in range(per_doc)
            ]
            vectors = rng.standard_normal((per_doc, embedder.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            writer.upsert(doc, chunks, vectors)
        upsert_s = time.perf_counter() - t
        t = time.perf_counter()
        writer.commit()
        commit_s = time.perf_counter() - t
    shutil.rmtree(work / "writer")
    chunks = (n // per_doc) * per_doc
    return {
        "chunks": chunks,
        "upsert_s": upsert_s,
        "commit_s": commit_s,
        "rate": chunks / (upsert_s + commit_s),
    }


def bytes_per_chunk(corpus: Path) -> dict[str, float]:
    """One worker's results for the text files, pickled as Ray sends them, per chunk."""
    settings = load_settings(**{"embedding.threads": 1})  # as on a one-CPU actor
    worker = IngestWorker(
        WorkerConfig(settings.embedding, settings.chunking, 0.0, 50 * 1024 * 1024, DEFAULT_LOADER)
    )
    files = [(p.as_posix(), p.as_posix()) for p in iter_files([corpus]) if p.suffix in TEXT_SUFFIXES]
    results = worker.process(files)
    chunks = sum(len(r.chunks) for r in results)
    vectors = sum(r.vectors.nbytes for r in results if r.vectors is not None)
    return {"chunks": chunks, "total": len(pickle.dumps(results)) / chunks, "vectors": vectors / chunks}


def report(
    runs: list[Run], startup: dict[int, float], writer: dict[str, float], wire: dict[str, float]
) -> str:
    modes = list(dict.fromkeys(r.mode for r in runs))
    local = {r.round: r for r in runs if r.mode == "local"}
    lines = [
        "| mode | rounds: wall s | median wall s | files/s | chunks/s | steady chunks/s | "
        "vs local (same round, median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in modes:
        mine = [r for r in runs if r.mode == mode]
        wall = statistics.median(r.seconds for r in mine)
        steady = statistics.median(r.chunks / r.steady for r in mine) if mode != "local" else None
        ratio = statistics.median(local[r.round].seconds / r.seconds for r in mine)
        lines.append(
            f"| {mode} | {', '.join(f'{r.seconds:.1f}' for r in mine)} | {wall:.1f} | "
            f"{mine[0].files / wall:.2f} | {mine[0].chunks / wall:.1f} | "
            f"{f'{steady:.1f}' if steady else '-'} | {ratio:.2f}x |"
        )
    lines += [
        "",
        "Actor start-up (each loads the int8 embedder), measured alone: "
        + ", ".join(f"{n} workers {s:.1f} s" for n, s in startup.items())
        + ". steady = chunks / (wall - start-up).",
        "",
        f"Single writer alone: {writer['chunks']:,} chunks upserted in {writer['upsert_s']:.1f} s and "
        f"committed in {writer['commit_s']:.1f} s: **{writer['rate']:,.0f} chunks/s** (SQLite rows, "
        "keyword terms, one flat segment).",
        "",
        f"Worker -> driver: {wire['total']:,.0f} bytes per chunk pickled (of which vector "
        f"{wire['vectors']:,.0f}; the rest is chunk text, offsets and the document's text), over "
        f"{wire['chunks']} chunks of the sample text files.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--writer-chunks", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray_ingest.md")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="rag-ray-bench-"))
    temp = Path(f"/tmp/rag-ray-bench-{os.getpid()}")
    (work / "corpus").mkdir()
    corpus = build_corpus(work / "corpus", args.replicas)
    writer = writer_rate(args.writer_chunks, work)  # first: no cluster needed, and cheap to fail
    wire = bytes_per_chunk(corpus)
    print(f"writer {writer}; bytes per chunk {wire}", flush=True)
    head, address = start_cluster(temp)
    runs: list[Run] = []
    try:
        startup = {n: startup_seconds(address, n, work) for n in counts}
        for rnd in range(1, args.rounds + 1):
            for mode, n in [("local", 0), *((f"ray-{n}", n) for n in counts)]:
                run = one_run(mode, rnd, corpus, work, address if n else None, n)
                run.startup = startup.get(n, 0.0)
                runs.append(run)
                print(f"round {rnd} {mode}: {run.seconds:.1f} s, {run.chunks} chunks", flush=True)
    finally:
        cluster.disconnect()
        stop_cluster(head)
        shutil.rmtree(temp, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    table = report(runs, startup, writer, wire)
    command = "flock /tmp/bench.lock .venv/bin/python bench/ray_ingest.py " + " ".join(sys.argv[1:])
    text = (
        f"# Ingestion on Ray: 1, 2, 4 workers against the local path\n\n"
        f"{datetime.now(UTC):%Y-%m-%d}, `{command.strip()}`, {os.cpu_count()} cores, one Ray node with "
        f"4 logical CPUs on loopback, {runs[0].files} files / {runs[0].chunks} chunks per run, "
        f"embedding.backend onnx-int8. Interpretation: docs/scale-out.md.\n\n{table}\n"
    )
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
