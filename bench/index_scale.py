"""Index-layer scale: every rag.index.ann kind at 10k, 100k and 1M vectors of dimension 384.

Usage:
    flock /tmp/bench.lock .venv/bin/python bench/index_scale.py [--sizes 10000,100000,1000000]
        [--kinds flat,hnsw,ivf_sq8,ivf_pq] [--queries 500] [--threads 1,2]
        [--out bench/results/index_scale.md]
    .venv/bin/python bench/index_scale.py --prepare    # only embed and cache the real vectors

Sections (one function each, so a ``--store`` section can be added beside them):

* ``real_vectors``: real MiniLM vectors (the project's default embedder,
  ``rag.components.build_embedder(Settings())``) of text chunks cut the way ingestion cuts them
  (``ingest.chunking.Chunker`` with the default chunking settings) from data/sample/docs, the
  Python documentation sources (``apt-get install -y python3.11-doc``) and the plain-text files
  under /usr/share/doc; cached in ~/.cache/rag-service/bench/.
* ``synthetic``: a seeded Gaussian mixture on the unit sphere whose spread is calibrated so that
  its mean 10th-neighbour cosine matches the real vectors' at the same size; it fills the sizes the
  real vectors cannot reach, and every row of the table says which set it ran on.
* ``measure_kind``: per (set, size, kind): build time, peak RSS growth of the build, disk size;
  then the searches: one query at a time (as a server does), >= 500 held-out queries (vectors of
  the same distribution, perturbed), p50/p95 at top-10 with FAISS threads = 1 and = 2, recall@10
  against exact flat search, and the same with a metadata filter allowing 1% and 30% of ids.
  Kinds are searched interleaved (query i on every kind before query i+1) so drift in machine
  load spreads over every kind alike; ratios are against flat measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import faiss  # noqa: E402

from rag.index import ann  # noqa: E402

CACHE = Path.home() / ".cache" / "rag-service" / "bench"
DIM = 384  # all-MiniLM-L6-v2
TOP_K = 10
SEED = 0
# Text the real vectors are cut from: the sample corpus, the Python docs' reStructuredText
# sources, and the plain-text files Debian packages ship (gzipped changelogs are left out: they
# are mostly version lines).
TEXT_ROOTS = (ROOT / "data" / "sample" / "docs", Path("/usr/share/doc"))
TEXT_SUFFIXES = (".txt", ".md", ".rst")
MIN_CHUNK_CHARS = 80  # shorter pieces are headings and separators, not retrievable passages
QUERY_NOISE = 0.35  # perturbation of a held-out vector, relative to its norm (before renormalising)
FILTERS = "0.01,0.3"  # default shares of ids a metadata filter allows (--filters)
REAL_CHUNKS = 11_000  # 10,000 to index + 500 held-out queries, and a margin; ~18 min to embed
EMBED_BATCH = 128  # chunks per embedder call (and per saved step)


# ---------------------------------------------------------------------------------------------
# real vectors


def _text_files() -> list[Path]:
    found: list[Path] = []
    for root in TEXT_ROOTS:
        for path in sorted(root.rglob("*")):
            name = path.name
            plain = path.suffix in TEXT_SUFFIXES or (name.startswith("README") and "." not in name)
            if plain and path.is_file() and not path.is_symlink():
                found.append(path)
    return found


def _chunks(files: Sequence[Path]) -> list[str]:
    """Chunks as ingestion makes them (default chunking settings, the embedder's tokens),
    deduplicated by text: licence files repeat verbatim across packages."""
    from ingest.chunking import Chunker
    from rag.components import build_embedder
    from rag.config import Settings
    from rag.types import Document, Page

    settings = Settings()
    embedder = build_embedder(settings)
    chunker = Chunker(settings.chunking, embedder.count_tokens, embedder.max_tokens)
    seen: set[str] = set()
    out: list[str] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        doc = Document(id=str(path), source=str(path), text=text, pages=[Page(None, 0, len(text))])
        for chunk in chunker.split(doc):
            body = chunk.text.strip()
            if len(body) >= MIN_CHUNK_CHARS and body not in seen:
                seen.add(body)
                out.append(body)
    return out


def real_vectors(limit: int | None = None) -> np.ndarray:
    """Real MiniLM vectors of REAL_CHUNKS real chunks (a seeded sample of every chunk, so each
    source is represented), float32, L2-normalised; computed once and cached (packages installed
    later add files under /usr/share/doc: the cached set stays the one every run measured).
    Embedding is the slow part (~10 chunks/s on 2 cores at 200 tokens), so finished batches are
    saved as they come and a killed run resumes."""
    path = CACHE / f"minilm-{REAL_CHUNKS}.npy"  # delete it to embed again (new text, model)
    if not path.exists():
        files = _text_files()
        _embed_into(path, files)
    vectors = np.load(path)
    return vectors if limit is None else vectors[:limit]


def _embed_into(path: Path, files: Sequence[Path]) -> None:
    from rag.components import build_embedder
    from rag.config import Settings

    texts = _chunks(files)
    order = np.random.default_rng(SEED).permutation(len(texts))[:REAL_CHUNKS]
    # Embedded in order of length (a batch pads to its longest text), then saved shuffled; a
    # chunk's vector does not depend on its batch.
    order = sorted(order, key=lambda i: len(texts[i]))
    texts = [texts[i] for i in order]
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    done = np.load(partial) if partial.exists() else np.zeros((0, DIM), dtype=np.float32)
    print(f"embedding {len(texts) - len(done)} of {len(texts)} sampled chunks ...", flush=True)
    embedder = build_embedder(Settings())
    started, first = time.perf_counter(), len(done)
    for lo in range(len(done), len(texts), EMBED_BATCH):
        batch = embedder.embed_documents(texts[lo : lo + EMBED_BATCH])
        done = np.concatenate([done, _normalised(np.asarray(batch, dtype=np.float32))])
        np.save(partial, done)
        rate = (len(done) - first) / (time.perf_counter() - started)
        print(f"  {len(done)}/{len(texts)} ({rate:.1f}/s)", flush=True)
    sampled = np.random.default_rng(SEED + 3).permutation(len(done))  # mix lengths back up
    np.save(path, done[sampled])
    partial.unlink()


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    faiss.normalize_L2(x)
    return x


# ---------------------------------------------------------------------------------------------
# synthetic vectors


@dataclass(frozen=True)
class Mixture:
    """A two-level Gaussian mixture on the unit sphere: topics, subtopics of ``per_sub`` vectors
    each, and a shared direction every vector leans towards (MiniLM vectors are not centred: two
    unrelated chunks have a positive cosine). ``scale`` multiplies both noise levels; the
    calibration picks it and ``lean`` so that neighbour and random-pair cosines match the real
    vectors'."""

    scale: float = 1.0
    lean: float = 0.3
    per_sub: int = 20  # vectors around one subtopic centre: one document's chunks, roughly
    subs_per_topic: int = 20  # subtopics of one topic
    sub_noise: float = 0.9  # subtopic centre around its topic (x scale)
    point_noise: float = 0.7  # vector around its subtopic centre (x scale)

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, subtopic of each) for ``n`` vectors; the same seed gives the same centres,
        so held-out queries of the same subtopics can be drawn with another call."""
        rng = np.random.default_rng(seed)
        subs = max(1, n // self.per_sub)
        topics = max(1, subs // self.subs_per_topic)
        shared = _normalised(rng.standard_normal((1, DIM)))
        topic = rng.standard_normal((topics, DIM)).astype(np.float32) / np.sqrt(DIM)
        sub = topic[rng.integers(0, topics, subs)]
        spread = self.scale * self.sub_noise / np.sqrt(DIM)
        sub += spread * rng.standard_normal((subs, DIM)).astype(np.float32)
        member = rng.integers(0, subs, n)
        out = np.empty((n, DIM), dtype=np.float32)
        step = 100_000  # rows at a time: 1M x 384 noise in one go would double peak memory
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            noise = rng.standard_normal((hi - lo, DIM)).astype(np.float32)
            out[lo:hi] = sub[member[lo:hi]] + (self.scale * self.point_noise / np.sqrt(DIM)) * noise
            out[lo:hi] += self.lean * shared
        return _normalised(out), member


def neighbour_stats(x: np.ndarray, probes: int = 500, seed: int = SEED) -> dict[str, float]:
    """Mean cosine of a vector's 1st and 10th nearest neighbour (itself excluded) and of a random
    pair: the shape of the exact-neighbour structure that ANN recall depends on."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), size=min(probes, len(x)), replace=False)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    scores, _ = index.search(x[rows], 11)
    pairs = rng.integers(0, len(x), size=(2000, 2))
    random_pair = np.einsum("ij,ij->i", x[pairs[:, 0]], x[pairs[:, 1]])
    return {
        "nn1": float(scores[:, 1].mean()),
        "nn10": float(scores[:, 10].mean()),
        "random": float(random_pair.mean()),
    }


CALIBRATION_GRID = {  # Mixture fields tried; the real vectors' statistics fall inside it
    "scale": (2.2, 2.6, 3.0, 3.5, 4.0, 5.0),
    "lean": (1.2, 1.6, 2.0, 2.5, 3.0),
    "per_sub": (6, 12, 24),
}


def calibrate(real: np.ndarray) -> tuple[Mixture, dict[str, float], dict[str, float]]:
    """The Mixture whose 1st- and 10th-neighbour and random-pair cosines at len(real) vectors are
    closest to the real vectors' (sum of absolute differences over a grid)."""
    target = neighbour_stats(real)
    best: tuple[float, Mixture, dict[str, float]] | None = None
    for scale in CALIBRATION_GRID["scale"]:
        for lean in CALIBRATION_GRID["lean"]:
            for per_sub in CALIBRATION_GRID["per_sub"]:
                mixture = Mixture(scale=scale, lean=lean, per_sub=per_sub)
                stats = neighbour_stats(mixture.sample(len(real), seed=SEED)[0])
                error = sum(abs(stats[key] - target[key]) for key in target)
                if best is None or error < best[0]:
                    best = (error, mixture, stats)
    assert best is not None
    return best[1], target, best[2]


# ---------------------------------------------------------------------------------------------
# data sets


@dataclass
class DataSet:
    name: str  # "real" or "synthetic"
    vectors: np.ndarray  # the indexed vectors
    ids: np.ndarray  # their chunk ids (not row numbers: spread out as a live store's are)
    queries: np.ndarray  # held-out vectors of the same distribution, perturbed
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.ids)


def _perturbed(x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(x.shape).astype(np.float32) * (QUERY_NOISE / np.sqrt(x.shape[1]))
    return _normalised(x + noise)


def _chunk_ids(n: int, seed: int) -> np.ndarray:
    """Sorted unique ids with gaps (deleted chunks leave holes in a live store's id space)."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.integers(1, 4, n)).astype(np.int64)


def real_set(n: int, queries: int, real: np.ndarray) -> DataSet | None:
    """``n`` real vectors and ``queries`` held-out real vectors, perturbed; None if too few."""
    if n + queries > len(real):
        return None
    order = np.random.default_rng(SEED).permutation(len(real))
    base, held = real[order[:n]], real[order[n : n + queries]]
    return DataSet("real", np.ascontiguousarray(base), _chunk_ids(n, SEED), _perturbed(held, SEED + 1))


def synthetic_set(n: int, queries: int, mixture: Mixture) -> DataSet:
    x, _ = mixture.sample(n + queries, seed=SEED)
    held = x[n:].copy()
    base = x[:n]
    return DataSet("synthetic", base, _chunk_ids(n, SEED), _perturbed(held, SEED + 1))


# ---------------------------------------------------------------------------------------------
# measuring one data set


@dataclass
class Variant:
    """One index kind at one set of search parameters (builds are shared by a kind's variants)."""

    kind: str
    params: ann.AnnParams
    label: str
    index: faiss.Index | None = None
    build: dict[str, float] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)  # section -> ms per query
    found: dict[str, np.ndarray] = field(default_factory=dict)  # section -> ids (nq, k)


# Search parameters tried for each kind (one build each): the default first.
SWEEP = {
    "flat": [{}],
    "hnsw": [{}, {"hnsw_ef_search": 64}, {"hnsw_ef_search": 256}],
    "ivf_sq8": [{}, {"ivf_nprobe": 32}, {"ivf_nprobe": 256}, {"ivf_nprobe": 512}],
    "ivf_pq": [{}],
}


def _variants(kinds: Sequence[str], base: ann.AnnParams) -> list[Variant]:
    out = []
    for kind in kinds:
        for change in SWEEP[kind]:
            params = replace(base, kind=kind, **change)  # type: ignore[arg-type]
            label = ", ".join(f"{k.split('_', 1)[1]}={v}" for k, v in change.items()) or "default"
            out.append(Variant(kind, params, label))
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class PeakRss:
    """Peak resident memory while a block runs, sampled every 20 ms by a thread (FAISS releases
    the GIL while it trains and adds, so the sampler runs during the build)."""

    start: float = 0.0
    peak: float = 0.0
    _stop: bool = False

    def __enter__(self) -> PeakRss:
        import threading

        self.start = self.peak = _rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def build_all(data: DataSet, variants: list[Variant], folder: Path, threads: int) -> None:
    """Build each kind once (all ``threads``), write it, and open it memory-mapped as a server
    does; its variants share the opened index."""
    built: dict[str, tuple[faiss.Index, dict[str, float]]] = {}
    for v in variants:
        if v.kind not in built:
            gc.collect()
            with PeakRss() as rss:
                started = time.perf_counter()
                index = ann.build(data.vectors, data.ids, replace(v.params, build_threads=threads))
                seconds = time.perf_counter() - started
            path = folder / f"{data.name}-{data.n}-{v.kind}.faiss"
            ann.write(index, path)
            del index
            stats = {
                "build_s": seconds,
                "rss_mb": rss.peak - rss.start,
                "disk_mb": path.stat().st_size / 2**20,
            }
            built[v.kind] = (ann.read(path, mmap=True), stats)
            print(f"  built {v.kind}: {seconds:.1f} s, {stats['disk_mb']:.0f} MB", flush=True)
        v.index, v.build = built[v.kind]


def filters_for(data: DataSet, shares: Sequence[float]) -> dict[str, np.ndarray | None]:
    """Sections of the search: unfiltered, and metadata filters allowing these shares of ids
    (seeded random subsets, sorted as the store hands them over)."""
    rng = np.random.default_rng(SEED + 2)
    out: dict[str, np.ndarray | None] = {"all": None}
    for share in shares:
        chosen = rng.choice(data.n, size=max(1, int(share * data.n)), replace=False)
        out[f"filter {share:.0%}"] = np.sort(data.ids[chosen])
    return out


def exact_truth(data: DataSet, allowed: np.ndarray | None, threads: int) -> np.ndarray:
    """Exact top-k ids of every query (flat inner product over the original vectors; under a
    filter, over the allowed vectors only), all queries in one batch."""
    faiss.omp_set_num_threads(threads)
    if allowed is None:
        index, ids = faiss.IndexFlatIP(DIM), data.ids
        index.add(data.vectors)
    else:
        rows = np.searchsorted(data.ids, allowed)
        index, ids = faiss.IndexFlatIP(DIM), data.ids[rows]
        index.add(np.ascontiguousarray(data.vectors[rows]))
    _, found = index.search(data.queries, TOP_K)
    return ids[found]


def time_searches(
    data: DataSet, variants: list[Variant], section: str, allowed: np.ndarray | None, threads: int
) -> None:
    """One query at a time, interleaved: query i on every variant, then query i + 1."""
    key = f"{section} t{threads}"
    params = {id(v): replace(v.params, search_threads=threads) for v in variants}
    for v in variants:
        v.latency[key] = []
        v.found[section] = np.full((len(data.queries), TOP_K), -1, dtype=np.int64)
    for i in range(len(data.queries)):
        q = data.queries[i : i + 1]
        for v in variants:
            started = time.perf_counter()
            _, ids = ann.search(v.index, q, TOP_K, allowed=allowed, params=params[id(v)])
            v.latency[key].append((time.perf_counter() - started) * 1000)
            v.found[section][i] = ids[0]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def measure_set(
    data: DataSet, kinds: Sequence[str], threads: Sequence[int], shares: Sequence[float], base: ann.AnnParams
) -> list[dict]:
    """Every variant of every kind on one data set: build, then searches (unfiltered at each
    thread count, filtered at one thread), recall against exact; one result row per variant."""
    variants = _variants(kinds, base)
    rows = []
    with tempfile.TemporaryDirectory(prefix="index-scale-") as tmp:
        build_all(data, variants, Path(tmp), threads=max(threads))
        sections = filters_for(data, shares)
        truths = {name: exact_truth(data, allowed, max(threads)) for name, allowed in sections.items()}
        for t in threads:
            time_searches(data, variants, "all", None, t)
        for name, allowed in sections.items():
            if allowed is not None:
                time_searches(data, variants, name, allowed, min(threads))
        for v in variants:
            row = {"set": data.name, "n": data.n, "kind": v.kind, "label": v.label, **v.build}
            for key, values in v.latency.items():
                row[f"p50 {key}"] = float(np.percentile(values, 50))
                row[f"p95 {key}"] = float(np.percentile(values, 95))
            for name in sections:
                row[f"recall {name}"] = recall(v.found[name], truths[name])
            rows.append(row)
        for v in variants:
            v.index = None  # unmap before the folder goes
    return rows


# ---------------------------------------------------------------------------------------------
# report


def _fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict], threads: Sequence[int], shares: Sequence[float]) -> str:
    """One markdown table: a row per (set, n, kind, search parameters); ratios are p95 over flat's
    p95 on the same set and size in the same run."""
    t1 = min(threads)
    head = ["set", "n", "kind", "search", "build s", "build RSS MB", "disk MB"]
    head += [f"ms p50 / p95, t{t}" for t in threads]
    head += [f"p95 / flat, t{t1}", "recall@10"]
    for share in shares:
        head += [f"{share:.0%} filter: ms p50 / p95", f"{share:.0%} filter: recall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        flat = next(
            (r for r in rows if r["set"] == row["set"] and r["n"] == row["n"] and r["kind"] == "flat"), None
        )
        cells = [row["set"], f"{row['n']:,}", row["kind"], row["label"]]
        cells += [_fmt(row["build_s"]), _fmt(row["rss_mb"], 0), _fmt(row["disk_mb"], 0)]
        cells += [_latency(row, f"all t{t}") for t in threads]
        ratio = row[f"p95 all t{t1}"] / flat[f"p95 all t{t1}"] if flat else None
        cells += [_fmt(ratio, 3), _fmt(row["recall all"], 3)]
        for share in shares:
            name = f"filter {share:.0%}"
            cells += [_latency(row, f"{name} t{t1}"), _fmt(row[f"recall {name}"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _latency(row: dict, key: str) -> str:
    return f"{row[f'p50 {key}']:.2f} / {row[f'p95 {key}']:.2f}"


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{os.cpu_count()} cores, {model}; faiss-cpu {faiss.__version__}, numpy {np.__version__}"


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="vectors per index, comma-separated")
    parser.add_argument("--kinds", default=",".join(ann.KINDS), help="index kinds, comma-separated")
    parser.add_argument("--sets", default="real,synthetic", help="real (where enough exist), synthetic")
    parser.add_argument("--queries", type=int, default=500, help="held-out queries per data set")
    parser.add_argument("--threads", default="1,2", help="FAISS threads to time searches with")
    parser.add_argument("--filters", default=FILTERS, help="shares of ids the filtered searches allow")
    parser.add_argument(
        "--max-hnsw",
        type=int,
        default=200_000,
        help="build HNSW only up to this size (its 2-core build is slow)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "index_scale.md")
    parser.add_argument("--append", action="store_true", help="add this run's section to --out")
    parser.add_argument("--prepare", action="store_true", help="only embed and cache the real vectors")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    threads = [int(t) for t in args.threads.split(",")]
    shares = [float(f) for f in args.filters.split(",") if f]
    sets = args.sets.split(",")
    real = real_vectors()
    mixture, real_stats, synthetic_stats = calibrate(real_set(10_000, 0, real).vectors)
    lines = [
        f"## Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: sizes {args.sizes}, kinds {args.kinds}",
        "",
        f"Machine: {machine()}. Command: `{' '.join(shlex.quote(a) for a in sys.argv)}`.",
        "",
        f"Real vectors: {len(real):,} MiniLM vectors of distinct chunks (default chunking) of "
        "data/sample/docs, the Python 3.11 docs sources and /usr/share/doc text files.",
        f"Synthetic: {mixture}, calibrated at 10,000 vectors. Neighbour cosines (mean of 1st, 10th "
        f"neighbour; random pair): real {_stats(real_stats)}, synthetic {_stats(synthetic_stats)}.",
        f"Queries: {args.queries} held-out vectors of the same set, perturbed (noise norm {QUERY_NOISE}).",
        "",
    ]
    rows: list[dict] = []
    for n in sizes:
        for name in sets:
            if name == "real":
                data = real_set(n, args.queries, real)
            else:
                data = synthetic_set(n, args.queries, mixture)
            if data is None:
                continue
            chosen = [k for k in kinds if k != "hnsw" or n <= args.max_hnsw]
            print(f"{data.name} n={n:,}: {', '.join(chosen)}", flush=True)
            rows += measure_set(data, chosen, threads, shares, ann.AnnParams())
            del data
            gc.collect()
            print(table(rows, threads, shares), flush=True)
    lines += [table(rows, threads, shares), ""]
    return "\n".join(lines)


def _stats(stats: dict[str, float]) -> str:
    return f"{stats['nn1']:.3f}, {stats['nn10']:.3f}; {stats['random']:.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.prepare:
        print(f"{len(real_vectors()):,} real vectors cached in {CACHE}")
        return
    section = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.read_text() if args.append and args.out.exists() else "# Index-layer scale\n\n"
    args.out.write_text(previous + section + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
