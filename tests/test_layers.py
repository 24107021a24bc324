"""The import contracts in pyproject.toml ([tool.importlinter]) hold: rag/ imports no front end,
ingest/ no api/eval/cli, api and eval are independent. scripts/test.sh runs lint-imports too; this
test makes a plain `pytest` run catch a new import that points the wrong way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout
