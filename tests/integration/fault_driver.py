"""Runs one install or uninstall on this machine for the fault-injection tests, in its own process so
that a fault point can SIGKILL it (python -m tests.integration.fault_driver install|uninstall BINARY)."""
from __future__ import annotations

import sys

from hostagent import engine, manifest
from tests.integration.test_host_steps import make_plan, systemd_assumed_here


def main(argv: list[str]) -> int:
    with systemd_assumed_here(), manifest.locked():
        if argv[0] == "install":
            engine.install(make_plan(argv[1]), {}, {})
        else:
            engine.uninstall()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
