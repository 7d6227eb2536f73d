#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (as root): the Debian packages the tests and the demo need, and .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
grep -v '^#' .ci/apt-packages.txt | xargs apt-get install -y -q >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    grep -v '^#' .ci/apt-packages.txt | xargs apt-get install -y -q >/dev/null
}
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]' -r tests/ansible/requirements.txt
