"""Do duplicated documents fill the top-k? The near-duplicate filter and MMR, measured (issue 12).

    .venv/bin/python bench/duplicates.py [--top-k 4]

The corpus is ``data/sample/docs`` plus an exact copy of every file under another name (the
"same text in two documents" case: a manual copied into two folders). It is indexed once with the
project's ``ingest()`` under ``~/.cache/rag-service/bench/``. For the 74 answerable questions of
``bench/data/sample_qa.jsonl`` (relevant chunks: as in ``bench/retrieval.py``, in either copy),
each configuration's top-k is scored by R@k (a relevant chunk among the k), the number of distinct
chunk texts among the k (k is best: no slot spent twice on one text) and the share of slots that
repeat a better slot's text. Quality only, no timings.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/duplicates.py`: the repository first, and not bench/ itself, whose
# ingest.py would otherwise shadow the ingest package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import bench.retrieval as br  # noqa: E402
from rag.components import build_components, build_embedder  # noqa: E402
from rag.config import load_settings  # noqa: E402
from rag.retrieval.hybrid import HybridRetriever  # noqa: E402

COPY_PREFIX = "copy-of-"
CONFIGS = {
    "duplicate filter on (default, >= 0.95)": {},
    "duplicate filter off": {"retrieval.duplicate_similarity": 1.01},
    "filter off, MMR lambda 0.7": {"retrieval.duplicate_similarity": 1.01, "retrieval.mmr_lambda": 0.7},
    "filter on, MMR lambda 0.7": {"retrieval.mmr_lambda": 0.7},
}


def duplicated_corpus(settings_fingerprint: str) -> Path:
    docs = br.CACHE / f"sample-duplicated-{settings_fingerprint}" / "docs"
    if not (docs / "complete").exists():
        shutil.rmtree(docs, ignore_errors=True)
        docs.mkdir(parents=True)
        for path in sorted(br.SAMPLE_DOCS.iterdir()):
            shutil.copy(path, docs / path.name)
            shutil.copy(path, docs / (COPY_PREFIX + path.name))
        (docs / "complete").write_text("")  # no indexed suffix: not ingested
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top-k", type=int, default=4, help="hits scored per question (default: 4)")
    args = parser.parse_args()
    settings = load_settings()
    embedder = build_embedder(settings)
    fingerprint = br.settings_fingerprint(settings)
    sample = br.sample_set(argparse.Namespace(rebuild=False), embedder, settings)
    docs = duplicated_corpus(fingerprint)
    index_dir = docs.parent / "index"
    br.build_index(docs, index_dir, embedder, rebuild=False)
    chunks = br.read_chunks(index_dir)
    # A chunk of either copy is relevant when the same span of the same file is relevant in the
    # plain sample index: map (file name without the copy prefix, start, end) across the two.
    plain = {
        cid: (Path(src).name, start, end) for cid, src, _p, start, end, _t in br.read_chunks(sample.index_dir)
    }
    spans: dict[tuple[str, int, int], list[int]] = {}
    for cid, source, _page, start, end, _text in chunks:
        spans.setdefault((Path(source).name.removeprefix(COPY_PREFIX), start, end), []).append(cid)
    texts = {cid: text.strip() for cid, _s, _p, _a, _b, text in chunks}
    relevant = [{c for rel in q.relevant for c in spans.get(plain[rel], [])} for q in sample.questions]
    components = build_components(load_settings(index_dir=str(index_dir)), embedder=embedder)
    command = " ".join(sys.argv)
    print(f"{len(chunks)} chunks ({len(sample.questions)} questions, top {args.top_k}); `{command}`\n")
    print("| configuration | R@k | distinct texts in top k (mean) | slots repeating a better slot's text |")
    print("|---|---|---|---|")
    for name, overrides in CONFIGS.items():
        variant = load_settings(index_dir=str(index_dir), **overrides)
        retriever = HybridRetriever(variant, embedder, components.store)
        hits_found, distinct, repeats = 0, [], 0
        for q, rel in zip(sample.questions, relevant, strict=True):
            ids = [int(h.chunk.id or 0) for h in retriever.retrieve(q.text, args.top_k).hits]
            hits_found += any(i in rel for i in ids)
            seen = [texts[i] for i in ids]
            distinct.append(len(set(seen)))
            repeats += len(seen) - len(set(seen))
        n = len(sample.questions)
        print(
            f"| {name} | {hits_found / n:.3f} | {statistics.mean(distinct):.2f} of {args.top_k} | "
            f"{repeats / (n * args.top_k):.1%} |"
        )


if __name__ == "__main__":
    main()
