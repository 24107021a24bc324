"""Which rewrite of a follow-up question conversation.condense should use, measured.

    flock /tmp/generator.lock .venv/bin/python bench/condense.py [--prefill] [--out bench/results/condense.md]

Over the sample corpus (data/sample/docs, indexed once into ~/.cache/rag-service/bench/; a re-run
re-ingests incrementally, a no-op when nothing changed) and the hand-written conversations of
bench/data/followups.jsonl (each: one to four earlier messages, an elliptic follow-up, the file
(and page) whose chunk answers it, strings that chunk holds, and words that name its subject),
every method turns the follow-up into the query that ``Pipeline.retrieve`` then runs with the
configured retriever and top_k:

* ``none``: the follow-up as it is;
* ``concat``: the previous user message, then the follow-up (no model call);
* ``generator (service prompt)``: the condense prompt of rag/prompt.py under the answer's system
  prompt (what the service does, ``rag.conversation.condensed``);
* ``generator v1/v3``: other instructions tried, under the answer's system prompt; ``v3, own
  system prompt``: v3 under a system prompt of its own (does the answer's one hurt the rewrite?).

Reported per method, for histories of one message and of more: hit@k (a retrieved chunk from the
right file, and page for the PDF, holding every expected string), R@1, rewrites that name the
subject, that still ask what the follow-up asked (one of its hand-listed words; a rewrite that
repeats the earlier question does not), both, seconds per rewrite (median, max) and its tokens;
with ``--prefill`` also the prefill time of the answer prompt right after each generator rewrite
(one answer token generated): what leaving llama.cpp's cached system-prompt prefix costs. The
generator loads once; run this on an otherwise idle machine (it uses every core), the load average
is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.components import build_components, build_generator
from rag.config import Settings, load_settings
from rag.context import Passage, approximate_tokens
from rag.conversation import bounded_history, clean, concatenated, condensed
from rag.pipeline import Pipeline
from rag.prompt import CONDENSE_INSTRUCTION, SYSTEM, build_condense_messages, build_messages
from rag.protocols import GenerationParams, Generator, Message, ReportsUsage, TokenCounter
from rag.types import ScoredChunk

DOCS = Path("data/sample/docs")
CONVERSATIONS = Path("bench/data/followups.jsonl")
INDEX = Path("~/.cache/rag-service/bench/condense-sample-index").expanduser()
# The variant's own system prompt: a rewriter's role, nothing about answering from passages.
OWN_SYSTEM = "You rewrite follow-up questions so that they can be understood on their own."
# Candidate condense instructions: v1 was the first one tried, v2 won (it is CONDENSE_INSTRUCTION now:
# "generator (service prompt)", with the fallbacks of rag.conversation), v3 adds an example.
V1 = (
    "Rewrite the follow-up question as one standalone question that names what it refers to, "
    "using the conversation above. Do not answer it. Reply with the rewritten question only."
)
V2 = (
    "Rewrite the follow-up question as one standalone question: keep what it asks, and replace "
    "words such as it, its, they, there, one or that with what they refer to in the conversation "
    "above. Do not answer it and do not repeat an earlier question. Reply with the rewritten "
    "question only."
)
V3 = V2 + (
    ' Example: after a conversation about the Zephyr backup tool, the follow-up "Where is its log?" '
    'becomes "Where is the log of the Zephyr backup tool?"'
)
# method -> (instruction, system prompt) for the generator variants.
VARIANTS = {
    "generator (service prompt)": (CONDENSE_INSTRUCTION, SYSTEM),
    "generator v1": (V1, SYSTEM),
    "generator v3 (v2 + example)": (V3, SYSTEM),
    "generator v3, own system prompt": (V3, OWN_SYSTEM),
}
METHODS = ("none", "concat", *VARIANTS)


@dataclass
class Outcome:
    row: dict[str, Any]
    query: str
    seconds: float = 0.0
    tokens: dict[str, float] = field(default_factory=dict)
    answer_prefill_s: float | None = None
    hits: list[ScoredChunk] = field(default_factory=list)

    @property
    def hit_at_k(self) -> bool:
        return any(right(self.row, h) for h in self.hits)

    @property
    def at_1(self) -> bool:
        return bool(self.hits) and right(self.row, self.hits[0])

    @property
    def names_subject(self) -> bool:
        return any(word.lower() in self.query.lower() for word in self.row["topic"])

    @property
    def keeps_intent(self) -> bool:
        """Still asks what the follow-up asked (a rewrite that repeats the earlier question does not)."""
        return any(word.lower() in self.query.lower() for word in self.row["intent"])

    @property
    def standalone(self) -> bool:
        return self.names_subject and self.keeps_intent


def right(row: dict[str, Any], hit: ScoredChunk) -> bool:
    """The chunk is from the follow-up's file (and page) and holds every expected string."""
    chunk = hit.chunk
    if chunk.source.rsplit("/", 1)[-1] != row["source"]:
        return False
    if row["page"] is not None and chunk.page != row["page"]:
        return False
    return all(s.lower() in chunk.text.lower() for s in row["expect"])


def rewrite(method: str, row: dict[str, Any], generator: Generator, settings: Settings) -> Outcome:
    config = settings.conversation
    counter = generator.count_tokens if isinstance(generator, TokenCounter) else approximate_tokens
    recent = bounded_history(row["history"], config, counter)
    question = row["question"]
    if method == "none":
        return Outcome(row, question)
    if method == "concat":
        return Outcome(row, concatenated(question, recent, "bench").question)
    if method == "generator (service prompt)":
        r = condensed(question, recent, generator, config)
        return Outcome(row, r.question, r.seconds, r.usage)
    instruction, system = VARIANTS[method]
    user = build_condense_messages(question, recent, instruction)[1]
    messages: list[Message] = [{"role": "system", "content": system}, user]
    params = GenerationParams(max_tokens=config.condense_max_tokens, temperature=0.0, stop=("\n",))
    t = time.perf_counter()
    out = generator.generate(messages, params)
    tokens = {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens}
    return Outcome(row, clean(out.text) or question, time.perf_counter() - t, tokens)


def answer_prefill_s(generator: Generator, query: str, hits: list[ScoredChunk]) -> float | None:
    """Prefill seconds of the answer prompt for ``query`` (one token generated), right now."""
    messages = build_messages(query, [Passage(h, h.chunk.text) for h in hits])
    generator.generate(messages, GenerationParams(max_tokens=1))
    return generator.last_stats.prefill_s if isinstance(generator, ReportsUsage) else None


def share(outcomes: list[Outcome], attr: str) -> str:
    return f"{sum(getattr(o, attr) for o in outcomes)}/{len(outcomes)}" if outcomes else "-"


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def table(results: dict[str, list[Outcome]], keep: Any) -> list[str]:
    lines = [
        "| method | hit@k | R@1 | names the subject | keeps the question | both | rewrite s (median) "
        "| max | rewrite tokens in/out (median) | answer prefill s after it (median) |",
        "|---|---|---|---|---|---|---:|---:|---|---:|",
    ]
    for method, outcomes in results.items():
        chosen = [o for o in outcomes if keep(o.row)]
        timed = [o.seconds for o in chosen if o.seconds]
        tokens = [o.tokens for o in chosen if o.tokens]
        io = (
            f"{statistics.median(t['prompt_tokens'] for t in tokens):.0f} / "
            f"{statistics.median(t['completion_tokens'] for t in tokens):.0f}"
            if tokens
            else "-"
        )
        prefill = [o.answer_prefill_s for o in chosen if o.answer_prefill_s is not None]
        lines.append(
            f"| {method} | {share(chosen, 'hit_at_k')} | {share(chosen, 'at_1')} "
            f"| {share(chosen, 'names_subject')} | {share(chosen, 'keeps_intent')} "
            f"| {share(chosen, 'standalone')} "
            f"| {median(timed)} | {f'{max(timed):.2f}' if timed else '-'} | {io} | {median(prefill)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/condense.md"))
    parser.add_argument(
        "--prefill", action="store_true", help="also time the answer prompt's prefill after each rewrite"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    INDEX.parent.mkdir(parents=True, exist_ok=True)
    ingest = [sys.executable, "-m", "cli", "ingest", str(DOCS), "--index", str(INDEX)]
    subprocess.run(ingest, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in CONVERSATIONS.read_text().splitlines() if line.strip()]

    settings = load_settings(index_dir=INDEX, **{"cache.enabled": False})
    t0 = time.perf_counter()
    generator = build_generator(settings)
    print(f"generator {generator.name} loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    components = build_components(settings, generator=generator)
    pipeline = Pipeline(settings, components.retriever, components.judge, generator)

    results: dict[str, list[Outcome]] = {m: [] for m in METHODS}
    for row in rows:
        for method in METHODS:  # interleaved: each generator variant follows the other's answer prompt
            outcome = rewrite(method, row, generator, settings)
            outcome.hits = pipeline.retrieve(outcome.query).hits
            if args.prefill and method.startswith("generator"):
                outcome.answer_prefill_s = answer_prefill_s(generator, outcome.query, outcome.hits)
            results[method].append(outcome)
            print(f"  {row['id']} {method}: {outcome.query!r} hit={outcome.hit_at_k}", flush=True)
    load_after = os.getloadavg()[0]

    one = [r for r in rows if len(r["history"]) == 1]
    c = settings.conversation
    lines = [
        f"`.venv/bin/python bench/condense.py` ({time.strftime('%Y-%m-%d %H:%M %Z')}; {len(rows)} "
        f"conversations of {CONVERSATIONS} ({len(one)} with a one-message history), sample corpus, "
        f"retriever {settings.retrieval.retriever} mode {settings.retrieval.mode}, "
        f"top_k {settings.retrieval.top_k}, "
        f"condense_max_tokens {c.condense_max_tokens}, max_history_tokens {c.max_history_tokens}; generator "
        f"{generator.name}; {os.cpu_count()} cores, 1-min load average {load_before:.2f} before, "
        f"{load_after:.2f} after)",
        "",
        f"All {len(rows)} conversations:",
        "",
        *table(results, lambda r: True),
        "",
        "Histories of two or more messages:",
        "",
        *table(results, lambda r: len(r["history"]) > 1),
        "",
        "Histories of one message:",
        "",
        *table(results, lambda r: len(r["history"]) == 1),
        "",
        "The rewrites (hit@k in brackets):",
        "",
        "| id | follow-up | " + " | ".join(METHODS[1:]) + " |",
        "|---|---|" + "---|" * len(METHODS[1:]),
    ]
    for i, row in enumerate(rows):
        cells = [
            f"{results[m][i].query} ({'hit' if results[m][i].hit_at_k else 'miss'})" for m in METHODS[1:]
        ]
        lines.append(
            f"| {row['id']} | {row['question']} ({'hit' if results['none'][i].hit_at_k else 'miss'}) | "
            + " | ".join(cells)
            + " |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)


if __name__ == "__main__":
    main()
