"""Shared fixtures. Real models only, each loaded once per session: the packaged MiniLM embedder
and, for the slow tier only, the configured default generator (`generator`; today the packaged
Qwen2.5-Coder-1.5B), shared by the in-process API server, the evaluator and the backend tests.

`_generator_loads` counts how many instances of the default generator class load their model in
this process and fails the session at its end when that is more than one (or any, when no slow
test was selected: the fast tier must never load it). The count is printed in the summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fpdf import FPDF

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from rag import registry
from rag.config import Settings, load_settings
from rag.embedding import make_embedder
from rag.protocols import Embedder, Generator

# A small corpus with facts no model knows (an invented tool), so an answer that contains them
# came from retrieval, and questions about what the corpus leaves out have no right answer.
CORPUS_TEXT = {
    "zephyr/overview.md": """# Zephyr backup

Zephyr is a command-line backup tool for small servers. It copies directories into
deduplicated snapshots and keeps an index of every file it has stored.

## Where data lives

Zephyr stores snapshots in /var/lib/zephyr/snapshots and writes its own log to
/var/log/zephyr/zephyr.log. The index of stored files is a SQLite database named
catalog.db inside the snapshot directory.
""",
    "zephyr/retention.txt": """Retention policy

By default Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks.
Older snapshots are pruned by the command zephyr prune, which runs every night at 03:30.
Administrators change the retention with the keep-daily and keep-weekly settings in
/etc/zephyr/zephyr.conf.
""",
    "zephyr/network.html": """<html><head><title>Zephyr network</title><style>p{color:red}</style>
<script>var tracking = "do-not-index";</script></head><body>
<nav>Home | Docs</nav>
<h1>Remote copies</h1>
<p>The zephyr-relay daemon sends snapshots to a remote site. It listens on TCP port 7341
and accepts connections only from hosts listed in /etc/zephyr/relay.allow.</p>
<p>Transfers are resumed automatically when a connection drops.</p>
</body></html>
""",
}
PDF_PAGES = [
    "Zephyr restore guide. Chapter one explains how to list snapshots with zephyr list.",
    "To restore a single file, run zephyr restore --snapshot ID --path FILE. "
    "Restored files are written to /srv/zephyr-restore unless --target is given.",
    "Chapter three covers disaster recovery from the remote relay site.",
]


def write_pdf(path: Path, pages: list[str]) -> None:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))


def build_corpus(root: Path) -> Path:
    for rel, text in CORPUS_TEXT.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    write_pdf(root / "zephyr" / "restore-guide.pdf", PDF_PAGES)
    return root


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return make_embedder(Settings().embedding)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def built_index(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path, embedder: Embedder) -> Settings:
    """Settings pointing at an index of the test corpus, built once per session."""
    from ingest.pipeline import ingest

    settings = load_settings(index_dir=tmp_path_factory.mktemp("index") / "idx")
    summary = ingest([corpus_dir], settings, embedder)
    assert summary.failed == 0 and summary.added == 4, summary
    return settings


@pytest.fixture(scope="session")
def generator() -> Generator:
    """The configured default generator, model loaded (for the default: ~80 s, ~7 GB), once per
    session. Slow tests only: a fast test that requests it is a defect (`_generator_loads`)."""
    from rag.components import build_generator

    return build_generator(load_settings())


# llm_server and light_server: the two real servers on loopback, shared by tests/api/ and
# tests/client/ (here, so each starts once per session whichever directories are run).
WAITING_BOUND = 48  # server.max_waiting_questions of llm_server


@pytest.fixture(scope="session")
def llm_server(built_index: Settings, embedder: Embedder, generator: Generator) -> Iterator[httpx.Client]:
    """The real app with the session's real generator and embedder (no second model load), served
    in this process by uvicorn on loopback, so tests still talk HTTP. Slow tests only."""
    from api.app import create_app
    from rag.components import build_components
    from tests.serving import serving_in_thread

    # More waiting questions than the server's thread pool has threads (40), for the starvation test.
    # No answer cache: these tests ask the same questions again and need each answer to go through
    # the gate and the generator (a cached answer would pass the gate tests unseen).
    # No per-address rate limit: the gate tests send WAITING_BOUND questions at once from loopback,
    # and their 429s must come from the generation queue, not from server.rate_limit_per_s.
    overrides = {
        "server.max_waiting_questions": WAITING_BOUND,
        "cache.enabled": False,
        "server.rate_limit_per_s": 0,
    }
    settings = load_settings(index_dir=built_index.index_dir, **overrides)
    components = build_components(settings, embedder=embedder, generator=generator)
    with serving_in_thread(create_app(settings, components=components)) as client:
        health = client.get("/healthz").json()
        assert health["generator"] == "ready", health  # the given generator, none other loaded
        yield client


@pytest.fixture(scope="session")
def light_server(built_index: Settings) -> Iterator[httpx.Client]:
    """`rag serve` as a real process (the smoke test of the command: its tests check health,
    validation and search over HTTP), whose generator is an OpenAI-compatible endpoint that is
    not running: it loads in no time. Questions that reach generation get a 502 from it, which
    one test checks."""
    from tests.serving import running_server

    env = {"RAG_GENERATOR__BACKEND": "openai", "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1"}
    with running_server(built_index.index_dir, env=env) as client:
        yield client


_LOADS = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session", autouse=True)
def _generator_loads(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Counts the instances of the default generator class whose ``load()`` ran (patched on the
    class, so a direct construction is counted too, whatever the backend); checked at session end."""
    settings = load_settings().generator
    cls = registry.resolve("generator", str(settings.backend), setting="generator.backend")
    loaded: list[str] = []  # one entry per instance (its name), not per call
    real_load = getattr(cls, "load", None)
    if real_load is None:  # a remote backend: nothing to load, nothing to count
        yield loaded
        return

    def counting_load(self: object, *args: object, **kwargs: object) -> object:
        if not getattr(self, "_tests_load_counted", False):
            loaded.append(getattr(self, "name", type(self).__name__))
            object.__setattr__(self, "_tests_load_counted", True)
        return real_load(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, "load", counting_load)
        yield loaded
    request.config.stash[_LOADS] = [f"{cls.__name__}: {len(loaded)} instance(s) loaded {loaded}"]
    allowed = 1 if any(item.get_closest_marker("slow") for item in request.session.items) else 0
    assert len(loaded) <= allowed, (
        f"{len(loaded)} {cls.__name__} instances loaded their model in this session (at most "
        f"{allowed}): use the session fixture `generator`, and only in slow tests"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for line in config.stash.get(_LOADS, []):
        terminalreporter.write_line(f"default generator loads: {line}")
