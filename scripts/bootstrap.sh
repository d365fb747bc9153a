#!/usr/bin/env bash
# Create .venv at the repo root (if missing) and install the project into it.
# Usage: scripts/bootstrap.sh [extra]   e.g. "test" installs the test oracles (torch, captum).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
target="."
[ -n "${1:-}" ] && target=".[$1]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
# The Open Inference Protocol tests drive the server with the real tritonclient, which pins
# protobuf < 7 (ours is 7): it gets an interpreter of its own, .venv/oip/.
if [ "${1:-}" = "test" ]; then
  [ -x .venv/oip/bin/python ] || "$python" -m venv .venv/oip
  .venv/oip/bin/python -m pip install --quiet --disable-pip-version-check "tritonclient[grpc]==2.73.0" numpy
fi
