#!/usr/bin/env bash
# hostagent's main job, on any fresh Debian 12 machine (as root), even one whose PID 1 is not systemd:
# boots a throwaway Debian 12 host under systemd-nspawn, puts hostagent on it from a wheelhouse, and
# runs install (dry run, real, again), status, doctor and uninstall there against a stand-in agent.
set -euo pipefail
cd "$(dirname "$0")"
bash tests/setup.sh --demo
exec .venv/bin/python -m tests.demo "$@"
