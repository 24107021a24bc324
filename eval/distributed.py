"""`rag eval --ray ADDRESS`: samples scored in parallel on a Ray cluster.

Each actor builds its own Evaluator once, from the driver's settings, with exactly the code and
models a local run uses (eval.runner.build_evaluator), and scores one sample per call. The driver
keeps the bookkeeping a local run has: samples already in ``partial.jsonl`` under the same judge
fingerprint are skipped, every record is appended (and fsynced) as it comes back, so a killed run
resumes, and the records are returned in input order. With a deterministic judge the records are
those of a local run (only the timings differ). A killed actor is restarted and its in-flight
samples re-run (``cluster.max_retries``).

Paths in the settings (the index) must be readable on every node: a shared or copied folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eval.dataset import Sample, sample_key
from eval.runner import PARTIAL, build_evaluator, fingerprint, load_partial
from rag.config import Settings


class _Scorer:
    """One worker: the evaluator is built once, in the actor's process."""

    def __init__(
        self, settings_json: str, judge_name: str, need_retrieval: bool, need_generation: bool
    ) -> None:
        settings = Settings.model_validate(json.loads(settings_json))
        self.evaluator, _ = build_evaluator(settings, judge_name, need_retrieval, need_generation)

    def score(self, index: int, sample: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return index, self.evaluator.score(Sample.model_validate(sample))


def run_on_cluster(
    settings: Settings,
    samples: Sequence[Sample],
    out_dir: Path,
    judge_name: str,
    need_retrieval: bool,
    need_generation: bool,
    address: str,
    on_progress: Callable[[int, int, bool], None] | None = None,
) -> list[dict[str, Any]]:
    from rag import cluster

    ray = cluster.connect(address)
    from ray.util import ActorPool

    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / PARTIAL
    done = load_partial(partial, fingerprint(settings, judge_name))
    keys = [sample_key(s.question, s.answer, s.contexts) for s in samples]
    todo = [i for i, k in enumerate(keys) if k not in done]
    finished = len(samples) - len(todo)
    if on_progress is not None:
        for n in range(finished):
            on_progress(n + 1, len(samples), True)
    if todo:
        c = settings.cluster
        actor = ray.remote(
            num_cpus=c.worker_cpus, max_restarts=c.max_retries, max_task_retries=c.max_retries
        )(_Scorer)
        blob = _portable(settings)
        workers = [
            actor.remote(blob, judge_name, need_retrieval, need_generation)
            for _ in range(min(c.workers, len(todo)))
        ]
        pool = ActorPool(workers)
        jobs = [(i, samples[i].model_dump()) for i in todo]
        with partial.open("a", encoding="utf-8") as f:
            for _, record in pool.map_unordered(lambda a, job: a.score.remote(*job), jobs):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                done[record["key"]] = record
                finished += 1
                if on_progress is not None:
                    on_progress(finished, len(samples), False)
        for w in workers:
            ray.kill(w)
    return [done[k] for k in keys]


def _portable(settings: Settings) -> str:
    """The settings as the workers need them: the index as an absolute path (a worker's working
    directory is not the driver's) and no secrets (a dump would carry them masked; each worker
    reads its own from its environment)."""
    data = json.loads(
        settings.model_copy(update={"index_dir": Path(settings.index_dir).resolve()}).model_dump_json()
    )
    return json.dumps(_without(data, MASKED))


MASKED = "**********"  # how pydantic dumps a SecretStr


def _without(node: Any, masked: str) -> Any:
    if isinstance(node, dict):
        return {k: _without(v, masked) for k, v in node.items() if v != masked}
    return node
