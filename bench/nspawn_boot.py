"""Benchmark the nspawn test-host tier: image, boot, agent start, and the host suite's own runtime.

    sudo .venv/bin/python bench/nspawn_boot.py [--boots 3] [--cold]

Measures (seconds, wall clock, on this machine):
  rootfs_build     mmdebstrap build of the nspawn image (--cold: into an empty cache dir; else 0 when cached)
  wheelhouse       hostagent + deps wheels (deps cached after the first run)
  clone            copy of the cached image for one host
  hostagent_venv   `python3 -m venv` + pip install from the wheelhouse, inside the host
  install / reinstall / uninstall   `hostagent install` (agent double), the no-op re-run, `uninstall`
  boot_to_system_running   nspawn start -> `systemctl is-system-running --wait` returns
  boot_to_agent_running    nspawn start -> the agent (double) runs as the user and has done its start-up
  suite            testinfra host suite over ssh against the host (installed state)
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.build import build_agent_double  # noqa: E402
from tests.images import rootfs  # noqa: E402
from tests.images.nspawn import NSPAWN_RECIPE, NspawnHost  # noqa: E402

STATUS = "/var/log/deepflow-agent/agent-double.json"


def agent_running(host) -> bool:
    pids = host.run("pgrep -x deepflow-agent").stdout.split()
    try:
        status = json.loads(host.run(f"cat {STATUS}").stdout)
    except ValueError:
        return False
    return bool(pids) and status.get("state") == "running" and str(status.get("pid")) in pids


def timed_boot(host) -> tuple[float, float]:
    host.poweroff()
    host._remove_cgroups()
    t0 = time.monotonic()
    host.boot()
    t_system = time.monotonic() - t0
    deadline = t0 + 60
    while not agent_running(host):
        if time.monotonic() > deadline:
            raise RuntimeError("agent did not start: " + host.journal())
        time.sleep(0.02)
    return t_system, time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also time a rootfs build into an empty cache")
    args = parser.parse_args()
    results: dict = {}

    if args.cold:
        with tempfile.TemporaryDirectory(prefix="rootfs-cold-", dir="/var/tmp") as cache:
            t0 = time.monotonic()
            rootfs.build_rootfs(NSPAWN_RECIPE, cache_dir=Path(cache))
            results["rootfs_build_cold"] = time.monotonic() - t0
    t0 = time.monotonic()
    rootfs.build_rootfs(NSPAWN_RECIPE)
    results["rootfs_build"] = time.monotonic() - t0

    double = build_agent_double()
    with NspawnHost(ssh=True) as host:
        results.update({k: v for k, v in host.timings.items() if k != "image"})
        results["hostagent_venv"] = results.pop("install_hostagent")
        host.put("/root/agent-double", double.read_bytes(), 0o755)
        install = "hostagent install --agent-binary /root/agent-double --controller-ip 127.0.0.1 --yes --json"
        for name, cmd in (("install", install), ("reinstall", install)):
            t0 = time.monotonic()
            host.run(cmd).check()
            results[name] = time.monotonic() - t0

        systems, agents = [], []
        for _ in range(args.boots):
            t_system, t_agent = timed_boot(host)
            systems.append(t_system)
            agents.append(t_agent)
        host.start_sshd()
        results["boot_to_system_running"] = statistics.median(systems)
        results["boot_to_agent_running"] = statistics.median(agents)
        results["boot_to_agent_running_all"] = [round(a, 3) for a in agents]

        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/system/test_host_state.py", "-q", "-p", "no:cacheprovider",
             f"--hosts={host.testinfra_host}"], cwd=REPO, capture_output=True, text=True,
        )
        results["suite"] = time.monotonic() - t0
        results["suite_result"] = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.returncode

        t0 = time.monotonic()
        host.run("hostagent uninstall --yes --json").check()
        results["uninstall"] = time.monotonic() - t0

    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
