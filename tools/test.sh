#!/usr/bin/env bash
# Runs the whole test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m ruff check agent tools tests
python3 tools/gen_bindings.py --check
exec python3 -m pytest -q -p no:cacheprovider "$@"
