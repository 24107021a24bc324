"""Shared fixtures. Real models only: the packaged MiniLM embedder (loaded once per session) and,
for the slow tier, the packaged Qwen2.5-Coder-1.5B served by one `rag serve` process per session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fpdf import FPDF

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from rag.config import Settings, load_settings
from rag.embedding import make_embedder
from rag.protocols import Embedder

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
