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
