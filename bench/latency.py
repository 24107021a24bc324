"""Answer latency of the default stack on this machine: model load, retrieval, generation.

Usage: .venv/bin/python bench/latency.py [--index ./index] [--questions N]
Builds the index of data/sample/docs first if it is missing. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from rag.components import build_components, build_generator
from rag.config import load_settings

QUESTIONS = [
    "Which command puts a package on hold with apt?",
    "What is the apt equivalent of apt-get dist-upgrade?",
    "On systemd systems, which GID must the tty group have?",
    "Which field is required in the header stanza of a machine-readable debian/copyright file?",
    "Which tool updates a Debian system automatically at regular intervals using a cron job?",
    "On which TCP port does apt-cacher listen by default?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=Path, default=Path("index"))
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    args = parser.parse_args()
    settings = load_settings(index_dir=args.index)
    t0 = time.perf_counter()
    components = build_components(settings)
    pipeline = components.pipeline()
    embedder_s = time.perf_counter() - t0
    if not (args.index / "CURRENT").exists():
        from ingest.pipeline import ingest

        ingest([Path("data/sample/docs")], settings, components.embedder)
    t1 = time.perf_counter()
    pipeline.generator = build_generator(settings)
    load_s = time.perf_counter() - t1
    rows = []
    for q in QUESTIONS[: args.questions]:
        t = time.perf_counter()
        a = pipeline.answer(q)
        total = (time.perf_counter() - t) * 1000
        rows.append(
            (
                q,
                a.refused,
                a.timings["retrieve_ms"],
                a.timings["generate_ms"],
                a.timings.get("ground_ms", 0),
                total,
            )
        )
    print(f"embedder load {embedder_s:.1f} s; generator load {load_s:.1f} s ({settings.generator.model})\n")
    print("| question | refused | retrieve ms | generate ms | ground ms | total ms |")
    print("|---|---|---:|---:|---:|---:|")
    for q, refused, r, g, gr, tot in rows:
        print(f"| {q} | {refused} | {r:.0f} | {g:.0f} | {gr:.0f} | {tot:.0f} |")
    med = [statistics.median(col) for col in zip(*[row[2:] for row in rows], strict=True)]
    print(f"| **median** | | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.0f} | {med[3]:.0f} |")


if __name__ == "__main__":
    main()
