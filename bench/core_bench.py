"""hostagent install / no-op re-install / uninstall, beside the floor: DeepFlow's bare non-root
commands in the right order, as a shell script, on the same Debian 12 nspawn host. Plus
`systemd-analyze security` of our unit beside DeepFlow's packaged unit and the recipe's unit.

    sudo .venv/bin/python bench/core_bench.py [--rounds 3]

Times are measured inside the host (date +%s%N around the command), so the nsenter/systemd-run
plumbing of the harness is not counted. Prints a table and one JSON object.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.build import build_agent_double  # noqa: E402
from tests.fixtures.deepflow_packages import UNIT as DEEPFLOW_UNIT  # noqa: E402
from tests.images.nspawn import NspawnHost  # noqa: E402

DOUBLE = "/root/agent-double"
CAPS = "cap_sys_ptrace,cap_net_raw,cap_net_admin,cap_ipc_lock,cap_sys_admin"

FLOOR_INSTALL = f"""set -e
groupadd --system deepflow
useradd --system --gid deepflow --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin deepflow
install -o root -g deepflow -m 0750 {DOUBLE} /usr/sbin/deepflow-agent
setcap {CAPS}=eip /usr/sbin/deepflow-agent
for c in cpu memory; do mkdir -p /sys/fs/cgroup/$c/deepflow-agent; chown -R deepflow:deepflow /sys/fs/cgroup/$c/deepflow-agent; done
install -d -o deepflow -g deepflow -m 0750 /var/log/deepflow-agent
install -d /etc/deepflow-agent
printf 'controller-ips:\\n- 127.0.0.1\\nlog-file: /var/log/deepflow-agent/deepflow-agent.log\\n' > /etc/deepflow-agent/deepflow-agent.yaml
chgrp deepflow /etc/deepflow-agent/deepflow-agent.yaml; chmod 0640 /etc/deepflow-agent/deepflow-agent.yaml
cat > /etc/systemd/system/deepflow-agent.service <<'UNIT'
[Service]
User=deepflow
ExecStart=/usr/sbin/deepflow-agent -f /etc/deepflow-agent/deepflow-agent.yaml
Restart=always
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --quiet --now deepflow-agent
until pgrep -u deepflow -x deepflow-agent >/dev/null; do sleep 0.01; done
"""

FLOOR_UNINSTALL = """set -e
systemctl disable --quiet --now deepflow-agent
rm /etc/systemd/system/deepflow-agent.service
systemctl daemon-reload
setcap -r /usr/sbin/deepflow-agent
for c in cpu memory; do rmdir /sys/fs/cgroup/$c/deepflow-agent; done
rm -r /etc/deepflow-agent /var/log/deepflow-agent /usr/sbin/deepflow-agent
userdel deepflow
"""

PACKAGED_UNIT = DEEPFLOW_UNIT  # DeepFlow's own unit, as its package ships it
RECIPE_UNIT = PACKAGED_UNIT.replace("[Service]\n", "[Service]\nUser=deepflow\n")


def timed(host, command: str) -> float:
    script = f"s=$(date +%s%N); {{\n{command}\n}} >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 ))"
    host.put("/root/bench.sh", script, 0o755)
    out = host.run("bash /root/bench.sh", timeout=300).check().stdout.strip().splitlines()
    return int(out[-1]) / 1e6


def exposure(host, unit_name: str) -> float:
    out = host.run(f"systemd-analyze security --no-pager {unit_name}").stdout
    # "→ Overall exposure level for x.service: 9.6 UNSAFE 😨"
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    if not m:
        raise RuntimeError(f"no exposure level in:\n{out[-2000:]}")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    double = build_agent_double()
    rows: dict[str, list[float]] = {k: [] for k in ("floor_install", "floor_uninstall", "install", "reinstall", "uninstall")}
    scores = {}
    install = f"hostagent install --agent-binary {DOUBLE} --controller-ip 127.0.0.1 --yes --json"
    with NspawnHost() as host:
        host.put(DOUBLE, double.read_bytes(), 0o755)
        for _ in range(args.rounds):
            rows["floor_install"].append(timed(host, FLOOR_INSTALL))
            rows["floor_uninstall"].append(timed(host, FLOOR_UNINSTALL))
            rows["install"].append(timed(host, install))
            rows["reinstall"].append(timed(host, install))
            scores["hostagent (deepflow-doc)"] = exposure(host, "deepflow-agent.service")
            rows["uninstall"].append(timed(host, "hostagent uninstall --yes --json"))
        for name, text in (("deepflow packaged", PACKAGED_UNIT), ("recipe, User= only", RECIPE_UNIT)):
            host.put("/etc/systemd/system/bench-unit.service", text)
            host.run("systemctl daemon-reload").check()
            scores[name] = exposure(host, "bench-unit.service")
        host.run("rm /etc/systemd/system/bench-unit.service && systemctl daemon-reload")
    result = {k: round(statistics.median(v), 3) for k, v in rows.items()}
    result["install_vs_floor"] = round(result["install"] / result["floor_install"], 2)
    result["uninstall_vs_floor"] = round(result["uninstall"] / result["floor_uninstall"], 2)
    result["systemd_analyze_exposure"] = scores
    print(f"{'':24}{'seconds (median of ' + str(args.rounds) + ')':>28}")
    for key in ("floor_install", "install", "reinstall", "floor_uninstall", "uninstall"):
        print(f"{key:24}{result[key]:>28.3f}")
    print(f"install / floor: {result['install_vs_floor']}×   uninstall / floor: {result['uninstall_vs_floor']}×")
    for name, score in scores.items():
        print(f"systemd-analyze security  {name:28} {score}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
