#!/usr/bin/env bash
# Create .venv and install the project with the local generator and test tools.
# Idempotent: re-running after a successful install only checks a stamp (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${RAG_VENV:-.venv}
PY=${PYTHON:-python3}
# The stamp covers this script too: a change to how things are built (the llama.cpp flags) reinstalls.
stamp="$VENV/.installed-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
# llama-cpp-python (the default generator runtime) has no binary wheel on the package index: it is
# compiled once, here, and kept outside the repository so later installs and CI reuse it.
LLAMA_CPP=llama-cpp-python==0.3.36
# A portable x86-64 build (AVX2 + FMA), not one tuned to the building CPU (GGML_NATIVE): the wheel is
# cached and reused, and a native build on a CPU that advertises AMX crashed (SIGSEGV in
# ggml_backend_amx_mul_mat) inside a VM that does not let processes use AMX tiles. The flags name
# the cache folder, so a wheel built with other flags is never picked up.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
WHEELS=${RAG_WHEEL_CACHE:-$HOME/.cache/rag-service/wheels}/avx2

# The browser tests (tests/ui) drive Debian's Chromium through Playwright (never `playwright
# install`, which downloads a browser build): installed once from the distribution's packages.
if [ ! -x /usr/bin/chromium ] && command -v apt-get > /dev/null 2>&1; then
  echo "==> installing chromium (Debian package) for the browser tests"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  { $sudo_cmd apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q chromium; } \
    > /tmp/rag-chromium-install.log 2>&1 ||
    { tail -n 20 /tmp/rag-chromium-install.log; echo "installing chromium failed" >&2; exit 1; }
fi

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
      "$VENV/bin/python" -m pip install "torch==2.13.0"
  } > "$log" 2>&1 || { tail -n 40 "$log"; echo "install failed; full log: $log" >&2; exit 1; }
  if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl > /dev/null 2>&1; then
    echo "==> compiling $LLAMA_CPP once into $WHEELS (about 15 minutes on 2 cores; log: $log)"
    mkdir -p "$WHEELS"
    # --no-cache-dir: pip's own wheel cache would hand back a wheel built with other flags.
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      "$VENV/bin/python" -m pip wheel --no-cache-dir --no-deps "$LLAMA_CPP" -w "$WHEELS" \
      >> "$log" 2>&1 || { tail -n 40 "$log"; echo "building $LLAMA_CPP failed; full log: $log" >&2; exit 1; }
  fi
  # ray: the scale-out tests (tests/distributed) start a real local Ray cluster.
  "$VENV/bin/python" -m pip install --find-links "$WHEELS" -e ".[local-llm,dev,ray]" >> "$log" 2>&1 ||
    { tail -n 40 "$log"; echo "install failed; full log: $log" >&2; exit 1; }
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
