#!/usr/bin/env bash
# README command 1: set up .venv, then run the main job on the bundled model and photo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh demo
exec .venv/bin/python scripts/demo.py "$@"
