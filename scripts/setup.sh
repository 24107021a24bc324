#!/usr/bin/env bash
# Create .venv and install the project with the local generator and test tools.
# Idempotent: re-running after a successful install only checks a stamp (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${RAG_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ]; then
  echo "==> installing into $VENV (first run: about 3 GB installed, a few minutes; log: $VENV/install.log)"
  log="$VENV/install.log"
  {
    "$VENV/bin/python" -m pip install --upgrade pip &&
      # torch first, pinned: this picks the local CPU wheel; an unpinned torch pulls a CUDA build.
      "$VENV/bin/python" -m pip install "torch==2.13.0" &&
      "$VENV/bin/python" -m pip install -e ".[local-llm,dev]"
  } > "$log" 2>&1 || { tail -n 40 "$log"; echo "install failed; full log: $log" >&2; exit 1; }
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
