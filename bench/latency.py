"""Answer latency and quality of generator configurations, side by side on this machine.

    .venv/bin/python bench/latency.py [--configs llamacpp,transformers] [--corpora sample,tutorial]
        [--questions 20] [--out bench/results/latency.md]

Each configuration runs in its own process (so its peak RSS is its own), one after another, over
the same questions: the hand-written sample-corpus set (bench/data/sample_qa.jsonl: answerable
questions with the strings a right answer contains and the file that holds it, and unanswerable
ones) and, for a second corpus, the Python tutorial (Debian's python3.11-doc,
bench/data/tutorial_qa.jsonl). Each index is built first if missing (./index, ./index-tutorial).

Per answer: wall time, prefill and decode tokens/s (from the generator's own timings), refused,
right (every expected string in a non-refused answer), cited right (a citation in the expected
file), and for unanswerable questions whether it was refused. A configuration is
``backend[:option=value...]``, e.g. ``llamacpp:context_tokens=400`` or
``llamacpp:prompt_lookup=true``. The answer cache is off (every answer is generated).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CORPORA = {
    "sample": (Path("data/sample/docs"), Path("index"), Path("bench/data/sample_qa.jsonl")),
    "tutorial": (
        Path("/usr/share/doc/python3.11/html/tutorial"),
        Path("index-tutorial"),
        Path("bench/data/tutorial_qa.jsonl"),
    ),
}


def pick(rows: list[dict], n: int) -> list[dict]:
    """A fixed, spread-out subset: answerable and unanswerable questions in proportion."""
    answerable = [r for r in rows if r["answerable"]]
    absent = [r for r in rows if not r["answerable"]]
    n_absent = max(1, round(n * len(absent) / len(rows))) if absent else 0
    take = lambda items, k: items[:: max(1, len(items) // k)][:k]  # noqa: E731
    return take(answerable, n - n_absent) + take(absent, n_absent)


def worker(args: argparse.Namespace) -> None:
    """One configuration over one question file; writes one JSON line per answer, then stats."""
    from rag.components import build_components, build_generator
    from rag.config import load_settings

    backend, *options = args.config.split(":")
    overrides = {"generator.backend": backend, "cache.enabled": False, "index_dir": args.index}
    for option in options:
        key, value = option.split("=", 1)
        overrides[f"generator.{key}"] = (
            json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
        )
    settings = load_settings(**overrides)
    t0 = time.perf_counter()
    generator = build_generator(settings)
    load_s = time.perf_counter() - t0
    pipeline = build_components(settings, generator=generator).pipeline()
    rows = [json.loads(line) for line in Path(args.questions).read_text().splitlines() if line.strip()]
    out = []
    for row in pick(rows, args.n):
        t = time.perf_counter()
        a = pipeline.answer(row["question"])
        wall = time.perf_counter() - t
        u = a.usage
        text = a.answer.lower()
        out.append(
            {
                "id": row["id"],
                "answerable": row["answerable"],
                "wall_s": round(wall, 2),
                "refused": a.refused,
                "right": row["answerable"]
                and not a.refused
                and all(e.lower() in text for e in row["expect"]),
                "cited_right": row["answerable"]
                and any(c.hit.chunk.source.endswith(row["source"]) for c in a.citations),
                "prompt_tokens": u.get("prompt_tokens", 0),
                "completion_tokens": u.get("completion_tokens", 0),
                "prefill_tps": u["prompt_tokens"] / (u["prefill_ms"] / 1000) if u.get("prefill_ms") else None,
                "decode_tps": (u["completion_tokens"] - 1) / (u["decode_ms"] / 1000)
                if u.get("decode_ms") and u["completion_tokens"] > 1
                else None,
                "answer": a.answer[:200],
            }
        )
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.out).write_text(json.dumps({"load_s": load_s, "rss_mb": rss_mb, "answers": out}))


def summarise(config: str, corpus: str, result: dict) -> str:
    answers = result["answers"]
    generated = [a for a in answers if a["prompt_tokens"]]  # not refused before generation
    walls = sorted(a["wall_s"] for a in generated)
    answerable = [a for a in answers if a["answerable"]]
    absent = [a for a in answers if not a["answerable"]]
    pf = [a["prefill_tps"] for a in answers if a["prefill_tps"]]
    dc = [a["decode_tps"] for a in answers if a["decode_tps"]]
    p95 = walls[min(len(walls) - 1, round(0.95 * (len(walls) - 1)))] if walls else 0.0
    return (
        f"| {config} | {corpus} | {statistics.median(walls) if walls else 0:.1f} | {p95:.1f} | "
        f"{statistics.median(pf) if pf else 0:.0f} | {statistics.median(dc) if dc else 0:.1f} | "
        f"{result['rss_mb'] / 1024:.2f} | {result['load_s']:.0f} | "
        f"{sum(a['right'] for a in answerable)}/{len(answerable)} | "
        f"{sum(a['cited_right'] for a in answerable)}/{len(answerable)} | "
        f"{sum(a['refused'] for a in absent)}/{len(absent)} | "
        f"{statistics.median(a['prompt_tokens'] for a in generated) if generated else 0:.0f} |"
    )


def ensure_index(docs: Path, index: Path) -> None:
    if (index / "CURRENT").exists():
        return
    subprocess.run([sys.executable, "-m", "cli", "ingest", str(docs), "--index", str(index)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="llamacpp,transformers")
    parser.add_argument("--corpora", default="sample,tutorial")
    parser.add_argument("--questions", type=int, default=20, dest="n")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--questions-file", dest="questions", help=argparse.SUPPRESS)
    parser.add_argument("--result", dest="out_json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.out = args.out_json
        worker(args)
        return
    lines = [
        f"`.venv/bin/python bench/latency.py --configs {args.configs} --corpora {args.corpora} "
        f"--questions {args.n}` ({time.strftime('%Y-%m-%d')}; configurations run one after another, each "
        "in its own process; answer cache off)",
        "",
        "| config | corpus | median s | p95 s | prefill tok/s | decode tok/s | peak RSS GB | load s "
        "| right | cited right | refused (unanswerable) | median prompt tokens |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for corpus in args.corpora.split(","):
        docs, index, questions = CORPORA[corpus]
        ensure_index(docs, index)
        for config in args.configs.split(","):
            result_path = Path(f"/tmp/latency-{corpus}-{config.replace(':', '_')}.json")
            command = [sys.executable, __file__, "--worker", "--config", config, "--index", str(index)]
            command += ["--questions-file", str(questions), "--questions", str(args.n)]
            subprocess.run([*command, "--result", str(result_path)], check=True)
            lines.append(summarise(config, corpus, json.loads(result_path.read_text())))
            print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
