"""`rag eval --ray`: samples scored on the real local Ray cluster (head + worker node) give the
records a local run gives with the deterministic support judge, and a run resumes from its
partial.jsonl exactly as a local one does.

The rows carry their answers and contexts (tests/data/faithfulness_labels.jsonl), so no index
or generator is needed; the embedder is the batch-invariant fp32 ONNX backend (see conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.dataset import load_dataset
from eval.distributed import run_on_cluster
from eval.runner import build_evaluator
from rag.config import load_settings

LABELS = Path(__file__).parents[1] / "data" / "faithfulness_labels.jsonl"
N = 24
TIMING = ("score_ms", "efficiency")


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


@pytest.fixture(scope="module")
def settings(fp32_embedder):  # fp32_embedder: its ONNX export is done once, before the workers load it
    return load_settings(**{"embedding.backend": "onnx", "cluster.workers": 2})


def test_distributed_eval_equals_local_and_resumes(ray_address, settings, tmp_path) -> None:
    samples = load_dataset(LABELS, N)
    local, _ = build_evaluator(settings, "support", False, False)
    expected = local.run(samples, tmp_path / "local")

    out = tmp_path / "cluster"
    first = run_on_cluster(settings, samples[: N // 2], out, "support", False, False, ray_address)
    assert [_comparable(r) for r in first] == [_comparable(r) for r in expected[: N // 2]]

    seen: list[bool] = []
    records = run_on_cluster(
        settings, samples, out, "support", False, False, ray_address, lambda d, t, cached: seen.append(cached)
    )
    assert seen.count(True) == N // 2 and seen.count(False) == N - N // 2  # the first half resumed
    assert [_comparable(r) for r in records] == [_comparable(r) for r in expected]
    assert len((out / "partial.jsonl").read_text().splitlines()) == N  # each sample written once
