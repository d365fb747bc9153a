#!/usr/bin/env bash
# README command 2: set up .venv with the test oracles, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
scripts/browser.sh
exec .venv/bin/python -m pytest -n 2 "$@"
