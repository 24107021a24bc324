"""Our faithfulness scores next to the RAGAS library's own, on the same labelled samples, same LLM.

Samples: a seeded, stratified draw from our labelled set (tests/data/faithfulness_labels.jsonl:
supported / one wrong detail / unsupported answers). Judges:

* RAGAS ``Faithfulness`` (ragas.metrics.collections, the LLM rewrites the answer into statements,
  then an NLI prompt judges each), talking to an OpenAI-compatible server;
* ours, ``support`` (the default, no LLM): ``rag.metrics.faithfulness`` with the lexical judge;
* ours, ``llm``: the same metric with the LLM judge, through the same server (JSON verdicts).

The LLM is the project's default generator, Qwen2.5-Coder-1.5B-Instruct (the GGUF file the project
joins into ~/.cache/rag-service/models), served by llama.cpp's OpenAI-compatible server.
RAGAS runs in its own virtual environment (its pins, e.g. langchain-community < 0.4, clash with
the project's); this script calls that environment's Python for the RAGAS half.

Set-up (once; llama-cpp-python compiles llama.cpp, ~15 min on 2 cores):
    python3 -m venv ~/.cache/rag-service/ragas-venv
    ~/.cache/rag-service/ragas-venv/bin/pip install 'llama-cpp-python[server]==0.3.36' 'ragas==0.4.3' \
        'langchain-community<0.4'
    ~/.cache/rag-service/ragas-venv/bin/python -m llama_cpp.server --port 8090 --n_ctx 8192 \
        --model ~/.cache/rag-service/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
        --model_alias qwen2.5-coder-1.5b
    (Not ``--cache true``: its RAM prompt cache grew past 20 GB here and the server was OOM-killed.)

Run:
    .venv/bin/python bench/ragas_compare.py --per-kind 8 --out bench/results/ragas_compare.md

Per-sample results are appended to JSONL files under ~/.cache/rag-service/ragas_compare/ as they
finish, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LABELS = ROOT / "tests" / "data" / "faithfulness_labels.jsonl"
CACHE = Path.home() / ".cache" / "rag-service" / "ragas_compare"
RAGAS_PYTHON = Path.home() / ".cache" / "rag-service" / "ragas-venv" / "bin" / "python"
KINDS = ("supported", "one_wrong_detail", "unsupported")
UNREACHABLE = ("APIConnectionError", "Cannot connect")  # the server was down: not the judge's fault


def sample(per_kind: int, seed: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, row in enumerate(rows):
        row["id"] = i
    rng = random.Random(seed)
    out = []
    for kind in KINDS:
        same = [r for r in rows if r["kind"] == kind]
        out += rng.sample(same, min(per_kind, len(same)))
    return out


def results(path: Path) -> dict[int, dict[str, Any]]:
    """The last record per sample in a results file (a retried sample's newest try wins)."""
    rows = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )
    return {r["id"]: r for r in rows}


def done_ids(path: Path) -> set[int]:
    """Samples with a result; a sample that failed because the server was unreachable is retried."""
    return {i for i, r in results(path).items() if not any(m in r.get("error", "") for m in UNREACHABLE)}


def append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------- RAGAS (its own venv)


def ragas_worker(items_path: Path, out: Path, base_url: str, model: str) -> None:
    """Runs under the RAGAS environment's Python: only ragas and openai are imported."""
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    from openai import AsyncOpenAI
    from ragas.llms import llm_factory
    from ragas.metrics.collections import Faithfulness

    items = json.loads(items_path.read_text())
    metric = Faithfulness(
        llm=llm_factory(model, client=AsyncOpenAI(base_url=base_url, api_key="none", timeout=900))
    )

    async def run() -> None:
        for item in items:
            t = time.perf_counter()
            record: dict[str, Any] = {"id": item["id"]}
            try:
                result = await metric.ascore(
                    user_input=item["question"], response=item["answer"], retrieved_contexts=item["contexts"]
                )
                value = result.value
                record["score"] = None if value is None or value != value else float(value)  # NaN -> None
                if record["score"] is None:
                    record["error"] = "RAGAS returned NaN (no statements extracted)"
            except Exception as exc:  # any failure is a result to report, not a crash
                record["score"], record["error"] = None, f"{type(exc).__name__}: {str(exc)[:300]}"
            record["seconds"] = round(time.perf_counter() - t, 2)
            append(out, record)
            print(f"  ragas {item['id']}: {record.get('score')} in {record['seconds']} s", flush=True)

    asyncio.run(run())


def run_ragas(items: list[dict[str, Any]], args: argparse.Namespace) -> None:
    out = CACHE / "ragas.jsonl"
    todo = [it for it in items if it["id"] not in done_ids(out)]
    if not todo:
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    todo_path = CACHE / "ragas-todo.json"
    todo_path.write_text(json.dumps(todo))
    cmd = [str(args.ragas_python), __file__, "--ragas-worker", str(todo_path), "--base-url", args.base_url]
    subprocess.run([*cmd, "--model", args.model], check=True)


# --------------------------------------------------------------------------- ours


def run_ours(items: list[dict[str, Any]], args: argparse.Namespace, judge_name: str) -> None:
    from rag.components import build_generator
    from rag.config import load_settings
    from rag.embedding import make_embedder
    from rag.grounding.judges import make_support_judge
    from rag.metrics import faithfulness

    out = CACHE / f"ours-{judge_name}.jsonl"
    todo = [it for it in items if it["id"] not in done_ids(out)]
    if not todo:
        return
    overrides: dict[str, Any] = {"generator.backend": "openai", "generator.base_url": args.base_url}
    settings = load_settings(**overrides, **{"generator.model": args.model, "generator.timeout_s": 900})
    embedder = make_embedder(settings.embedding)
    generator = build_generator(settings) if judge_name == "llm" else None
    judge = make_support_judge(judge_name, settings.grounding, embedder, generator)
    for item in todo:
        t = time.perf_counter()
        record: dict[str, Any] = {"id": item["id"]}
        try:
            score, verdicts = faithfulness(item["answer"], item["contexts"], judge)
            record["score"], record["statements"] = score, len(verdicts)
            if score is None:
                record["error"] = "no checkable statement"
        except Exception as exc:  # reported per sample, like RAGAS failures
            record["score"], record["error"] = None, f"{type(exc).__name__}: {str(exc)[:300]}"
        record["seconds"] = round(time.perf_counter() - t, 2)
        append(out, record)
        print(f"  ours/{judge_name} {item['id']}: {record['score']} in {record['seconds']} s", flush=True)


# --------------------------------------------------------------------------- report


def load(name: str) -> dict[int, dict[str, Any]]:
    return results(CACHE / f"{name}.jsonl")


def auc(labels: list[int], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else None


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def render(items: list[dict[str, Any]], args: argparse.Namespace, minutes: float) -> str:
    judges = {
        "RAGAS Faithfulness (LLM)": load("ragas"),
        "ours, support (default, no LLM)": load("ours-support"),
    }
    judges["ours, llm (same server, JSON)"] = load("ours-llm")
    ragas = judges["RAGAS Faithfulness (LLM)"]
    fmt = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [
        "# Our faithfulness vs RAGAS's, same samples, same LLM",
        "",
        f"{len(items)} samples from `tests/data/faithfulness_labels.jsonl` ({args.per_kind} per kind, "
        f"`random.Random({args.seed})`); LLM: `{args.model}` (Q4_K_M GGUF) behind llama.cpp's "
        f"OpenAI-compatible server, temperature as each judge sets it. Run "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; this invocation took {minutes:.1f} min (cached samples "
        "are not re-run).",
        "",
        f"Command: `python bench/ragas_compare.py --per-kind {args.per_kind} --seed {args.seed} "
        "--out bench/results/ragas_compare.md`",
        "",
        "| judge | scored | failed | ROC AUC (label) | mean: supported | mean: one wrong detail "
        "| mean: unsupported | Spearman vs RAGAS | s / sample |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in judges.items():
        scored = [it for it in items if res.get(it["id"], {}).get("score") is not None]
        failed = sum(1 for it in items if it["id"] in res and res[it["id"]].get("score") is None)
        labels = [it["label"] for it in scored]
        scores = [res[it["id"]]["score"] for it in scored]
        means = []
        for kind in KINDS:
            vals = [res[it["id"]]["score"] for it in scored if it["kind"] == kind]
            means.append(sum(vals) / len(vals) if vals else None)
        both = [it for it in scored if ragas.get(it["id"], {}).get("score") is not None]
        rho = None
        if res is not ragas:
            rho = spearman([res[it["id"]]["score"] for it in both], [ragas[it["id"]]["score"] for it in both])
        secs = [r["seconds"] for r in res.values() if "seconds" in r]
        lines.append(
            f"| {name} | {len(scored)} | {failed} | {fmt(auc(labels, scores) if scored else None, 3)} | "
            + " | ".join(fmt(m) for m in means)
            + f" | {fmt(rho)} | {fmt(sum(secs) / len(secs) if secs else None, 1)} |"
        )
    errors = sorted({r["error"] for res in judges.values() for r in res.values() if r.get("error")})
    lines += ["", "Failures (a sample a judge could not score is listed, never averaged in):", ""]
    lines += [f"- {e}" for e in errors] or ["- none"]
    lines += [
        "",
        "Per sample (label 1 = supported; scores are faithfulness = supported statements / statements):",
        "",
        "| id | kind | label | RAGAS | ours support | ours llm |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for it in items:
        cells = [fmt(res.get(it["id"], {}).get("score")) for res in judges.values()]
        lines.append(f"| {it['id']} | {it['kind']} | {it['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-kind", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base-url", default="http://127.0.0.1:8090/v1")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b", help="the model name the server serves")
    ap.add_argument("--ragas-python", type=Path, default=RAGAS_PYTHON)
    ap.add_argument("--judges", default="ragas,support,llm", help="which to run (cached ones are reused)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--ragas-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ragas_worker:
        ragas_worker(args.ragas_worker, CACHE / "ragas.jsonl", args.base_url, args.model)
        return
    started = time.perf_counter()
    items = sample(args.per_kind, args.seed)
    wanted = args.judges.split(",")
    if "support" in wanted:
        run_ours(items, args, "support")
    if "ragas" in wanted:
        run_ragas(items, args)
    if "llm" in wanted:
        run_ours(items, args, "llm")
    text = render(items, args, (time.perf_counter() - started) / 60)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
