#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) and run the whole test suite; extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
exec .venv/bin/python -m pytest "$@"
