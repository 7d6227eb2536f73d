"""Converge time of the deepflow_agent role: one nspawn host, then 1, 2 and 4 inventory hosts with forks.

Run as root: .venv/bin/python bench/ansible_converge.py [--repeat 3]

Only ONE nspawn container may run at a time on this machine (they share its cgroup v1 hierarchy;
NspawnHost holds /run/lock/hostagent-tests-cgroup.lock), so 2 and 4 real hosts cannot be booted
together here. What is measured instead:
  fresh       first converge of the one host (user, caps, cgroups, config, unit, start)
  noop        converge of the converged host (median of --repeat)
  check       --check --diff on the converged host (median)
  N aliases   N inventory names for the same container, each with its own SSH connection, run with
              forks=N and with forks=1. The controller and SSH side runs in parallel as for N hosts; the
              hostagent calls on the one host are serialized by its manifest lock, so this is an upper
              bound of what N real hosts would take (their hostagent runs would not wait on each other).
Fresh converges of N real hosts need N machines (or VMs run one at a time): not measured here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ansible.runner import Host, run_playbook, write_inventory  # noqa: E402


def timed(inventory: Path, extra: dict, *args: str, forks: int = 5) -> float:
    run = run_playbook(inventory, extra, *args, forks=forks)
    if run.rc != 0:
        raise SystemExit(f"ansible-playbook {' '.join(args)} failed:\n{run.log}")
    return run.seconds


def median(inventory: Path, extra: dict, repeat: int, *args: str, forks: int = 5) -> float:
    return statistics.median(timed(inventory, extra, *args, forks=forks) for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    from tests.fixtures.build import build_agent_double
    from tests.images.nspawn import NspawnHost
    from tests.images.wheelhouse import build_wheelhouse

    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="ansible-bench-") as tmp_name:
        tmp = Path(tmp_name)
        wheels = build_wheelhouse(tmp / "wheelhouse")
        extra = {
            "deepflow_agent_controller_ips": ["127.0.0.1"],
            "deepflow_agent_binary_src": str(build_agent_double()),
            "deepflow_agent_hostagent_wheelhouse": str(wheels),
        }
        t0 = time.monotonic()
        with NspawnHost(ssh=True, wheelhouse=wheels) as host:
            figures["host_ready_s"] = round(time.monotonic() - t0, 1)
            assert host.ssh_port is not None
            key = host.workdir / "id_ed25519"

            def inventory(n: int) -> Path:
                hosts = [Host(f"h{i}", host.ssh_port, key, f"ansible_control_path_dir={tmp}/cp-h{i}")
                         for i in range(1, n + 1)]
                return write_inventory(hosts, tmp / f"hosts-{n}.ini")

            one = inventory(1)
            figures["fresh_1_host_s"] = round(timed(one, extra), 2)
            figures["noop_1_host_s"] = round(median(one, extra, args.repeat), 2)
            figures["check_diff_1_host_s"] = round(median(one, extra, args.repeat, "--check", "--diff"), 2)
            for n in (1, 2, 4):
                inv = inventory(n)
                figures[f"noop_{n}_aliases_forks{n}_s"] = round(median(inv, extra, args.repeat, forks=n), 2)
                if n > 1:
                    figures[f"noop_{n}_aliases_forks1_s"] = round(median(inv, extra, args.repeat, forks=1), 2)
            timed(one, dict(extra, deepflow_agent_state="absent"))
    figures["load_avg_1min"] = round(os.getloadavg()[0], 2)
    figures["note"] = ("one nspawn container at a time on this machine: N aliases = N inventory names for "
                       "the same container (own SSH connection each); hostagent runs on it are serialized")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
