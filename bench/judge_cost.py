"""What the LLM judge costs per statement with a generator backend: P(yes) for "is this statement
supported by the context?" read from the next-token logits (one prompt pass per statement).

    .venv/bin/python bench/judge_cost.py [--backend llamacpp] [--items 12]

Statements are the answers of the first items of tests/data/faithfulness_labels.jsonl, judged
against their contexts. Prints seconds per statement (median, max), prompt tokens, and how many
verdicts agree with the item's label at P(yes) >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rag.components import build_generator
from rag.config import load_settings
from rag.grounding.llm_judge import LLMSupportJudge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="llamacpp")
    parser.add_argument("--items", type=int, default=12)
    args = parser.parse_args()
    settings = load_settings(**{"generator.backend": args.backend})
    generator = build_generator(settings)
    judge = LLMSupportJudge(generator, settings.grounding)
    rows = [
        json.loads(line) for line in Path("tests/data/faithfulness_labels.jsonl").read_text().splitlines()
    ]
    seconds, agree = [], 0
    for row in rows[: args.items]:
        t = time.perf_counter()
        p = judge.probability(row["answer"], row["contexts"])
        seconds.append(time.perf_counter() - t)
        agree += (p >= 0.5) == bool(row["label"])
    print(
        f"{args.backend}: {len(seconds)} statements, median {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.2f} s per statement; {agree}/{len(seconds)} verdicts agree with the labels"
    )


if __name__ == "__main__":
    main()
