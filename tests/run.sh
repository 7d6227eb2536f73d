#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (as root) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
grep -v '^#' .ci/apt-packages.txt | xargs apt-get install -y -q >/dev/null || {
    apt-get update -q >/dev/null
    grep -v '^#' .ci/apt-packages.txt | xargs apt-get install -y -q >/dev/null
}
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]' -r tests/ansible/requirements.txt
exec .venv/bin/python -m pytest "$@"
