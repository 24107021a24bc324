"""Backends chosen through config alone: a toy store and a toy retriever (tests/plugins/toy.py)
named in settings serve /v1/search and /v1/query over real HTTP (uvicorn on loopback), with the
real MiniLM embedder; the registry refuses a wrong class by setting, value and choices. The fast
tier drafts with a scripted generator; the slow twin answers with the session's real generator."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from ingest.pipeline import ingest
from rag.components import Components, build_components
from rag.config import Settings, load_settings
from rag.errors import ConfigError
from rag.protocols import Embedder, Generation, GenerationParams, Generator, Message
from tests.plugins.toy import NothingSupportedJudge, ToyRetriever, ToyStore
from tests.serving import serving_in_thread

PLUGINS = {
    "index.store": "tests.plugins.toy:ToyStore",
    "retrieval.retriever": "tests.plugins.toy:ToyRetriever",
    "ingest.file_timeout_s": 0,
}
ON_TOPIC = "On which TCP port does the zephyr-relay daemon listen?"
OFF_TOPIC = "What is the boiling point of water in Fahrenheit?"


class ScriptedGenerator:
    """A declared fake generator: the real one is a 7 GB model, out of place in the fast tier
    (the slow tier runs the same path with it). It answers with the sentence of passage [1] that
    shares most words with the question, cited [1], which is what a faithful model would say."""

    name = "scripted"

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        return Generation("".join(self.stream(messages, params)))

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        user = messages[-1]["content"]
        passage = re.search(r'<passage n="1"[^>]*>(.*?)</passage>', user, re.S)
        assert passage is not None, user  # rag.prompt's passage blocks
        question = set(re.findall(r"\w+", user.rsplit("Question:", 1)[1].lower()))
        sentences = re.split(r"(?<=[.!?])\s+", passage.group(1).strip())
        best = max(sentences, key=lambda s: len(question & set(re.findall(r"\w+", s.lower()))))
        yield best.rstrip(".") + " [1]."


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return load_settings(index_dir=tmp_path / "toy-index", **PLUGINS, **extra)


@contextmanager
def serving(components: Components) -> Iterator[httpx.Client]:
    """The real app over ``components`` under uvicorn on a loopback port, in a background thread."""
    with serving_in_thread(create_app(components.settings, components=components)) as client:
        yield client


@pytest.fixture
def toy_components(tmp_path: Path, corpus_dir: Path, embedder: Embedder) -> Components:
    settings = _settings(tmp_path)
    summary = ingest([corpus_dir], settings, embedder)  # into the toy store, chosen by settings
    assert summary.failed == 0 and summary.added == 4, summary
    return build_components(settings, embedder=embedder, generator=ScriptedGenerator())


def test_search_and_query_come_from_the_toy_backends(toy_components: Components) -> None:
    assert isinstance(toy_components.store, ToyStore)
    assert isinstance(toy_components.retriever, ToyRetriever)
    with serving(toy_components) as client:
        health = client.get("/healthz").json()
        assert health["index"]["loaded"] and health["index"]["documents"] == 4, health
        assert health["generator"] == "ready"  # the given generator: no other is loaded

        found = client.post("/v1/search", json={"query": ON_TOPIC, "top_k": 3}).json()
        assert found["index_version"] == 1
        # ToyRetriever's rank scores (1, 1/2, 1/3), not cosines: the hits went through it.
        assert [r["score"] for r in found["results"]] == [1.0, 0.5, 0.3333]
        assert found["results"][0]["source"].endswith("network.html")

        answer = client.post("/v1/query", json={"question": ON_TOPIC}).json()
        assert not answer["refused"], answer
        assert "7341" in answer["answer"]
        assert answer["citations"][0]["source"].endswith("network.html")

        docs = client.get("/v1/documents").json()
        assert docs["total"] == 4 and docs["index_version"] == 1


def test_the_gate_reads_the_dense_cosine_not_the_rank_score(toy_components: Components) -> None:
    """The toy retriever gives its best hit score 1.0 for any question; an off-topic question
    must still be refused before generation, by its cosine (below retrieval.min_score)."""
    hits = toy_components.pipeline().search(OFF_TOPIC)
    assert hits[0].score == 1.0 and hits[0].dense_score is not None
    assert hits[0].dense_score < toy_components.settings.retrieval.min_score
    with serving(toy_components) as client:
        answer = client.post("/v1/query", json={"question": OFF_TOPIC}).json()
    assert answer["refused"] and answer["timings"]["generate_ms"] == 0.0
    assert f"best score {hits[0].dense_score:.2f}" in answer["reason"]


def test_grounding_judge_setting_selects_the_answer_paths_judge(
    tmp_path: Path, corpus_dir: Path, embedder: Embedder
) -> None:
    settings = _settings(tmp_path, **{"grounding.judge": "tests.plugins.toy:NothingSupportedJudge"})
    ingest([corpus_dir], settings, embedder)
    components = build_components(settings, embedder=embedder, generator=ScriptedGenerator())
    assert isinstance(components.judge, NothingSupportedJudge)
    with serving(components) as client:
        answer = client.post("/v1/query", json={"question": ON_TOPIC}).json()
    assert answer["refused"] and not answer["citations"]  # the faithful draft, judged unsupported
    assert components.judge.calls > 0


@pytest.mark.slow
def test_the_toy_backends_answer_with_the_real_generator(
    tmp_path: Path, corpus_dir: Path, embedder: Embedder, generator: Generator
) -> None:
    """The slow twin of the first test: the same settings-chosen toy store and retriever, the
    real default generator (no scripted draft), over loopback HTTP."""
    settings = _settings(tmp_path)
    ingest([corpus_dir], settings, embedder)
    components = build_components(settings, embedder=embedder, generator=generator)
    assert isinstance(components.store, ToyStore) and isinstance(components.retriever, ToyRetriever)
    with serving(components) as client:
        assert client.get("/healthz").json()["generator"] == "ready"
        answer = client.post("/v1/query", json={"question": ON_TOPIC}).json()
        off = client.post("/v1/query", json={"question": OFF_TOPIC}).json()
    assert not answer["refused"], answer
    assert "7341" in answer["answer"] and answer["timings"]["generate_ms"] > 0
    cited = [c for c in answer["citations"] if "7341" in c["text"]]
    assert cited and cited[0]["source"].endswith("network.html"), answer["citations"]
    assert f"[{cited[0]['n']}]" in answer["answer"]
    assert off["refused"] and off["timings"]["generate_ms"] == 0.0  # the gate, before the model


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "index.store",
            "tests.plugins.toy:NotAStore",
            r"index.store='tests.plugins.toy:NotAStore' built a "
            r"NotAStore, which is not a VectorStore \(missing: refresh, snapshot, writer\)",
        ),
        (
            "index.store",
            "memory",
            r"index.store='memory' is unknown; use one of 'faiss', 'sharded' or a class",
        ),
        ("retrieval.retriever", "no_such_module_xyz:R", r"retrieval.retriever=.*cannot import module"),
        ("grounding.judge", "tests.plugins.toy:Missing", r"grounding.judge=.*has no 'Missing'"),
    ],
)
def test_a_wrong_backend_names_the_setting_and_the_choices(
    tmp_path: Path, embedder: Embedder, key: str, value: str, message: str
) -> None:
    settings = load_settings(index_dir=tmp_path / "idx", **{key: value})
    with pytest.raises(ConfigError, match=message):
        build_components(settings, embedder=embedder, generator=ScriptedGenerator())
