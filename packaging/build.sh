#!/usr/bin/env bash
# The release build: bash packaging/build.sh, as root on Debian 12, reaching only PyPI and Debian's
# mirrors. Writes dist/: the single file, k8s-sync's OCI image, .deb, .rpm, the Ansible collection, the
# per-Python wheelhouses and SHA256SUMS. Extra args go to packaging/build.py (--only single, --variants ...).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root" >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive
# This machine needs mmdebstrap, and what .venv's pip needs to compile python-prctl for the 3.11
# wheelhouse; the single file and the other wheelhouses are built in chroots.
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v python3 >/dev/null || need+=(python3 python3-venv python3-dev)
for pkg in gcc libc6-dev libcap-dev; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
    apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q "${need[@]}" >/dev/null; }
fi
# The controller-side venv: ansible-galaxy for the collection, pip for the wheelhouses, hostagent
# itself for the man page and completions, pypa/build for the sdist.
if [ ! -x .venv/bin/ansible-galaxy ] || ! .venv/bin/python -c 'import hostagent.cli.app, build' 2>/dev/null; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e . --group release -r tests/ansible/requirements.txt
fi
exec python3 packaging/build.py "$@"
