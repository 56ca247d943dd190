#!/usr/bin/env bash
# Sets up a fresh machine for augpipe: Debian packages (when missing), a venv
# at .venv in the repository root, and the package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="pkg-config libopencv-dev libturbojpeg0-dev libjpeg62-turbo-dev dataset-fashion-mnist"
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "== installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
echo "== installing augpipe into .venv (torch 2.14.1 / torchvision 0.29.1 come from this machine's disk)"
pip_install() {  # quiet on success; on failure, pip's output (minus index-location noise) and exit 1
  local log; log=$(mktemp)
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2; rm -f "$log"
    echo "setup: pip install $* failed" >&2; exit 1
  fi
  rm -f "$log"
}
pip_install --upgrade pip
pip_install -e ".[dev,dali,ffcv,driver,stream]"  # ffcv builds against the Debian packages above
.venv/bin/python -c "import augpipe, torch, torchvision; print('augpipe', augpipe.__version__, '| torch', torch.__version__, '| torchvision', torchvision.__version__)"
# Compile augpipe's kernels once now (numba caches them on disk), so the first real run starts in seconds.
.venv/bin/augpipe warmup
