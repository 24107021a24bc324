"""Time to the first checked sentence and total time per answer: the draft stream as it was
before grounded streaming vs grounded streaming (Pipeline.checked_stream), on the sample corpus.

    flock /tmp/generator.lock .venv/bin/python bench/first_sentence.py [--questions 10]
        [--out bench/results/first_sentence.md]

"Before" is the answer path as it was until grounded streaming (commit daf111e): the model's
draft streamed as it was written, unchecked, then the whole draft grounded at once, so the first
*checked* text a client could show was the final answer. It is re-created here from the same
parts (retrieve, pack, prompt, the generator's stream, ``ground_answer``); its time to the first
(unchecked) token is reported too. "After" is ``checked_stream``: each sentence is judged as
soon as it is complete and shown if supported. For a refused answer the first checked text is
the refusal, at the end, in both.

One generator serves both, interleaved: two passes over the questions, alternating old and new
(q1 old, q2 new, ...; then q1 new, q2 old, ...), so consecutive answers are never to the same
question (llama.cpp would reuse the whole prompt's KV state) and drift hits both alike. Answer
cache off; greedy decoding, so both see the same draft (checked per answer: ``same draft``).
One warm-up answer first, not counted. Run it on an idle machine
(the 1-minute load average is recorded) and under ``flock /tmp/generator.lock`` when others
share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import CORPORA, ensure_index, pick

from rag.context import approximate_tokens, pack
from rag.grounding.answer import ground_answer
from rag.pipeline import Answer, CheckedSentence, Pipeline
from rag.prompt import build_messages
from rag.protocols import TokenCounter


def old_draft_stream(pipeline: Pipeline, question: str) -> dict[str, Any]:
    """The answer path before grounded streaming, timed: first token, then grounding at the end."""
    t0 = time.perf_counter()
    hits = pipeline.retrieve(question).hits
    if pipeline._gate(hits) is not None:  # refused before generating: the same in both paths
        return {"first_token_s": None, "first_checked_s": _s(t0), "total_s": _s(t0), "refused": True}
    generator, judge = pipeline.generator, pipeline.judge
    assert generator is not None and judge is not None
    counter = generator.count_tokens if isinstance(generator, TokenCounter) else approximate_tokens
    passages = pack(question, hits, pipeline.settings.generator.context_tokens, counter)
    pieces, first_token_s = [], None
    with closing(generator.stream(build_messages(question, passages), pipeline.default_params())) as stream:
        for piece in stream:
            first_token_s = first_token_s if first_token_s is not None else _s(t0)
            pieces.append(piece)
    grounded = ground_answer("".join(pieces), [p.text for p in passages], judge, pipeline.settings.grounding)
    total = _s(t0)
    return {
        "first_token_s": first_token_s,
        "first_checked_s": total,  # the grounded answer is the first checked text
        "total_s": total,
        "refused": grounded.refused,
        "draft": "".join(pieces),
        "answer": grounded.answer,
    }


def grounded_stream(pipeline: Pipeline, question: str) -> dict[str, Any]:
    """checked_stream, timed: the first checked sentence (or the refusal), then the end."""
    t0 = time.perf_counter()
    first, sentences, answer = None, 0, None
    for item in pipeline.checked_stream(question, use_cache=False):
        if isinstance(item, CheckedSentence):
            first = first if first is not None else _s(t0)
            sentences += 1
        elif isinstance(item, Answer):
            answer = item
    total = _s(t0)
    assert answer is not None
    return {
        "first_checked_s": first if first is not None and not answer.refused else total,
        "total_s": total,
        "refused": answer.refused,
        "sentences": sentences,
        "shown_before_refusal": sentences if answer.refused else 0,
        "draft": answer.draft,
        "answer": answer.answer,
    }


MODES = [("old", old_draft_stream), ("new", grounded_stream)]


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("draft", "answer")}


def _s(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from rag.components import build_components, build_generator
    from rag.config import load_settings

    docs, index, questions = CORPORA["sample"]
    ensure_index(docs, index)
    settings = load_settings(index_dir=index, **{"cache.enabled": False})
    pipeline = build_components(settings, generator=build_generator(settings)).pipeline()
    rows = [json.loads(line) for line in questions.read_text().splitlines() if line.strip()]
    chosen = pick(rows, args.n)
    warm_up = next(r for r in rows if r not in chosen)  # another question: not counted
    pipeline.answer(warm_up["question"], use_cache=False)
    results: dict[str, dict[str, dict[str, Any]]] = {row["id"]: {} for row in chosen}
    # llama.cpp keeps the last prompt's KV state and skips the prefix the next prompt shares, so
    # the same question twice in a row would skip its whole prefill the second time. Consecutive
    # answers are therefore always to different questions: pass 1 answers q1 old, q2 new, q3 old,
    # ...; pass 2 the other way round (every answer after one to another question).
    for turn in (0, 1):
        for i, row in enumerate(chosen):
            name, fn = MODES[(i + turn) % 2]
            results[row["id"]][name] = fn(pipeline, row["question"])
            print(json.dumps({"id": row["id"], "mode": name, **_brief(results[row["id"]][name])}), flush=True)
    out = []
    for row in chosen:
        r = results[row["id"]]
        record: dict[str, Any] = {"id": row["id"], "answerable": row["answerable"]}
        record |= {f"{mode}_{k}": v for mode, res in r.items() for k, v in res.items()}
        record["same_draft"] = r["old"].get("draft") == r["new"].get("draft")
        out.append(record)
    return out


def _median(records: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in records)


def report(records: list[dict[str, Any]], args: argparse.Namespace, load: float) -> str:
    lines = [
        f"`flock /tmp/generator.lock .venv/bin/python bench/first_sentence.py --questions {args.n}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; sample corpus, bench/data/sample_qa.jsonl, "
        f"default settings, answer cache off; 1-minute load average at the start {load:.2f}; "
        "two interleaved passes, consecutive answers always to different questions)",
        "",
        "| question | answerable | old: first token s | old: first checked s (= total) | new: first checked "
        "sentence s | new: total s | new: sentences shown | refused (old / new) | same draft |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in records:
        token = "-" if r["old_first_token_s"] is None else f"{r['old_first_token_s']:.2f}"
        lines.append(
            f"| {r['id']} | {r['answerable']} | {token} | {r['old_total_s']:.2f} | "
            f"{r['new_first_checked_s']:.2f} | {r['new_total_s']:.2f} | {r['new_sentences']} | "
            f"{r['old_refused']} / {r['new_refused']} | {r['same_draft']} |"
        )
    lines += [
        "",
        "| over | answers | old: first checked s, median | new: first checked s, median "
        "| old: total s, median | new: total s, median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, subset in [
        ("all", records),
        ("answered (not refused by new)", [r for r in records if not r["new_refused"]]),
    ]:
        if not subset:
            continue
        old_first, new_first = _median(subset, "old_first_checked_s"), _median(subset, "new_first_checked_s")
        old_total, new_total = _median(subset, "old_total_s"), _median(subset, "new_total_s")
        lines.append(
            f"| {label} | {len(subset)} | {old_first:.2f} | {new_first:.2f} | {old_total:.2f} "
            f"| {new_total:.2f} |"
        )
    shown = sum(r["new_shown_before_refusal"] for r in records)
    lines += ["", f"Sentences shown by the new stream in answers that ended refused: {shown}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=10, dest="n")
    parser.add_argument("--out", type=Path, default=Path("bench/results/first_sentence.md"))
    parser.add_argument("--json", type=Path, default=Path("/tmp/first_sentence.json"), help="raw records")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    records = run(args)
    args.json.write_text(json.dumps(records, indent=1))
    text = report(records, args, load)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
