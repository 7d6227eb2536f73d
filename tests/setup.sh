#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (as root): the Debian packages and .venv.
#   tests/setup.sh          everything the test suite needs
#   tests/setup.sh --demo   only what demo.sh needs (no qemu, no ansible, no linters)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# The lint and release tools are PEP 735 dependency groups (pyproject.toml): pip >= 25.1 (upgraded below).
packages=.ci/apt-packages.txt extras='.[test]' requirements=(--group lint --group release -r tests/ansible/requirements.txt)
if [ "${1:-}" = "--demo" ]; then
    packages=.ci/apt-demo.txt extras='.' requirements=()
fi
grep -v '^#' "$packages" | xargs apt-get install -y -q >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    grep -v '^#' "$packages" | xargs apt-get install -y -q >/dev/null
}
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e "$extras" "${requirements[@]}"
