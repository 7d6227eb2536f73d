#!/usr/bin/env bash
# Put hostagent into /opt/hostagent (a venv) on this host and run `hostagent install "$@"`.
# Needs root and a systemd host; for hosts without internet use a wheelhouse (README).
set -euo pipefail
cd "$(dirname "$0")"
PREFIX=${HOSTAGENT_PREFIX:-/opt/hostagent}
if [ "$(id -u)" != 0 ]; then echo "install.sh: run as root" >&2; exit 2; fi
if command -v apt-get >/dev/null; then
    pkgs=(gcc python3-dev python3-venv libcap-dev)
    dpkg -s "${pkgs[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null; }
elif command -v dnf >/dev/null; then
    dnf install -y -q gcc python3-devel libcap-devel
fi
[ -x "$PREFIX/bin/python" ] || python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install -q --upgrade pip
"$PREFIX/bin/pip" install -q .
if [ $# -eq 0 ]; then
    echo "hostagent is in $PREFIX/bin/hostagent; next: $PREFIX/bin/hostagent install --controller-ip IP"
    exit 0
fi
exec "$PREFIX/bin/hostagent" install "$@"
