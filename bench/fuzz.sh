#!/usr/bin/env bash
# A larger fuzzing run than the test suite's (tests/api/test_fuzz.py runs 25 cases per operation
# in CI): the same four runs (no keys configured; keys but none sent; a read key; an admin key)
# against a real `rag serve`, with EXAMPLES cases per operation (default 500) and the same seed.
# Nightly-style: about 2 minutes per 25 examples on 2 cores, so the default takes a while.
#   bash bench/fuzz.sh [EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RAG_FUZZ_EXAMPLES="${1:-500}" exec .venv/bin/python -m pytest -q -s tests/api/test_fuzz.py -p no:cacheprovider
