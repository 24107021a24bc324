#!/usr/bin/env bash
# The main job, from a fresh clone: install, index the sample corpus, serve, ask a question.
# The server keeps running afterwards (Ctrl-C stops it); DEMO_ONCE=1 stops it after the answer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RAG=.venv/bin/rag
export RAG_INDEX_DIR=${RAG_INDEX_DIR:-./index}
PORT=${RAG_SERVER__PORT:-8000}
URL="http://127.0.0.1:$PORT"
QUESTION=${DEMO_QUESTION:-"On systemd systems, which GID must the tty group have?"}

echo "==> indexing data/sample/docs into $RAG_INDEX_DIR (unchanged files are skipped)"
$RAG ingest data/sample/docs

echo "==> starting the server on $URL (the generator loads in seconds with llama.cpp)"
$RAG serve --port "$PORT" > server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT INT TERM
.venv/bin/python - "$URL" <<'PY'
import sys, time, httpx
url = sys.argv[1]
for _ in range(600):
    try:
        health = httpx.get(url + "/healthz", timeout=5).json()
        if health["generator"] == "ready":
            sys.exit(0)
        if health["generator"].startswith("error"):
            sys.exit("generator failed: " + health["generator"])
    except httpx.TransportError:
        pass
    time.sleep(1)
sys.exit("server not ready after 10 minutes; see server.log")
PY

echo "==> asking: $QUESTION"
$RAG ask "$QUESTION" --server "$URL"
cat <<MSG

Ask more questions:
  .venv/bin/rag ask "your question" --server $URL
  curl -s $URL/v1/query -H 'content-type: application/json' -d '{"question": "..."}'
API docs: $URL/docs    server log: server.log
MSG
if [ "${DEMO_ONCE:-0}" = "1" ]; then exit 0; fi
echo "Server running; press Ctrl-C to stop."
wait $SERVER
