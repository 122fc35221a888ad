#!/usr/bin/env bash
# The whole test suite: unit tests (no root) and lab tests (root: real hosts made on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python3 -m invoke lab.down > /dev/null 2>&1 || true
exec python3 -m pytest -q -rs "$@"
