"""The single file against the venv install, and the role's converge with the single file.

    sudo .venv/bin/python bench/single_file_bench.py [--rounds 7] [--dist DIR] [--json]

1. Size of each artifact in dist/ (built for this checkout if missing, as in CI: tests/dist.py).
2. On one Debian 12 nspawn host that has both (the venv in /opt/hostagent from the wheelhouse, the
   README's way, and the single file at /usr/sbin/hostagent), median of --rounds, timed inside the
   host (date +%s%N around the command, bench/core_bench.py's `timed`):
   - `--version`; the file's first start (unpacking its cache) once, apart;
   - `status` of an installed agent;
   - a no-op `install` (the same install again, by the same launcher);
   - the launcher's start-to-agent-exec: the unit's own two commands (`exec --prepare-only` as
     ExecStartPre=+, then `exec --prepared` as ExecStart), read from the unit each launcher wrote,
     with the agent double's `-v` appended so the agent exits at once after exec (the double parses
     its argv first thing). Outside the unit's sandbox; the same for both.
3. The role from the release's collection tarball with the single file on a fresh nspawn host (no
   venv): the first converge, then the converge of the converged host (median of --rounds, changed=0),
   with one SSH master kept across runs (ControlPersist, as ansible.cfg sets it). Also the floor: a
   play with one `ping` task on that warm connection (ansible-playbook's own start-up and one round trip).

Prints the figures side by side with the targets of issue 9, then (--json) one JSON object.
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

from bench.core_bench import timed  # noqa: E402
from tests.ansible.runner import Host, install_collection, run_playbook, write_inventory  # noqa: E402
from tests.fixtures.build import build_agent_double  # noqa: E402
from tests.images.nspawn import HOSTAGENT_VENV, NspawnHost  # noqa: E402

DOUBLE = "/root/agent-double"
FILE = "/usr/sbin/hostagent"
VENV = f"{HOSTAGENT_VENV}/bin/hostagent"
INSTALL = f"install --agent-binary {DOUBLE} --controller-ip 127.0.0.1 --yes --quiet"
MIB = 1024 * 1024


def dist_dir(arg: str) -> Path:
    if arg:
        return Path(arg)
    os.environ.setdefault("CI", "true")  # build the artifacts for this checkout when missing, as CI does
    from tests.dist import find_or_build_dist

    return find_or_build_dist()


def sizes(dist: Path) -> dict:
    out = {}
    for path in sorted(dist.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            out[path.name + "/"] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        else:
            out[path.name] = path.stat().st_size
    return out


def median(host, command: str, rounds: int) -> float:
    return statistics.median(timed(host, command) for _ in range(rounds))


def settle(host) -> None:
    """After an install: the agent is up and its start-up work done, so it does not share the CPUs
    with what is timed next."""
    host.run("systemctl is-active --quiet deepflow-agent && sleep 2").check()


def launcher_commands(host) -> str:
    """The unit's ExecStartPre=+ and ExecStart lines as one shell command, the agent exiting at once."""
    unit = host.get("/etc/systemd/system/deepflow-agent.service")
    pre = next(line.split("=", 1)[1].lstrip("+") for line in unit.splitlines() if line.startswith("ExecStartPre=+"))
    start = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
    return f"{pre} && {start} -v"


def host_figures(single: Path, rounds: int) -> dict:
    fig: dict = {}
    with NspawnHost(hostagent_file=single) as host:
        host.put(DOUBLE, build_agent_double().read_bytes(), 0o755)
        host.run("systemctl stop deepflow-agent 2>/dev/null; true")
        for name, exe in (("file", FILE), ("venv", VENV)):
            if name == "file":
                host.run("rm -rf /var/cache/hostagent").check()
                fig["file_first_start_s"] = timed(host, f"{exe} --version")
            fig[f"{name}_version_s"] = median(host, f"{exe} --version", rounds)
            # The install by this launcher (the other one's unit differs), then the no-op ones.
            host.run(f"{exe} {INSTALL}", timeout=300).check()
            settle(host)
            fig[f"{name}_status_s"] = median(host, f"{exe} status", rounds)
            fig[f"{name}_noop_install_s"] = median(host, f"{exe} {INSTALL}", rounds)
            launch = launcher_commands(host)
            host.run("systemctl stop deepflow-agent").check()
            fig[f"{name}_launcher_s"] = median(host, launch, rounds)
            host.run("systemctl start deepflow-agent").check()
            settle(host)
        host.run(f"{FILE} uninstall --yes --quiet").check()
    return fig


def converge_figures(dist: Path, rounds: int) -> dict:
    from tests.dist import collection_in, single_file_in

    fig: dict = {}
    with tempfile.TemporaryDirectory(prefix="single-file-bench-") as tmp_name:
        tmp = Path(tmp_name)
        collections = install_collection(collection_in(dist), tmp / "collections")
        extra = {
            "deepflow_agent_controller_ips": ["127.0.0.1"],
            "deepflow_agent_binary_src": str(build_agent_double()),
            "deepflow_agent_hostagent_file": str(single_file_in(dist)),
        }
        with NspawnHost(ssh=True, install_hostagent=False) as host:
            assert host.ssh_port is not None
            # One SSH master kept across runs (ansible.cfg's ControlPersist=60s), as for a user who
            # re-runs the play: the converged runs do not pay the SSH handshake. The first run does.
            cp = f"ansible_control_path_dir={tmp}/cp"
            inventory = write_inventory([Host("h1", host.ssh_port, host.workdir / "id_ed25519", cp)], tmp / "hosts.ini")

            def play(vars_: dict):
                run = run_playbook(inventory, vars_, collections=collections)
                if run.rc != 0:
                    raise SystemExit(f"ansible-playbook failed:\n{run.log}")
                return run

            first = play(extra)
            fig["converge_fresh_s"] = round(first.seconds, 2)
            fig["converge_fresh_changed"] = first.changed("h1")
            runs = [play(extra) for _ in range(rounds)]
            fig["converge_noop_s"] = round(statistics.median(r.seconds for r in runs), 2)
            fig["converge_noop_changed"] = max(r.changed("h1") for r in runs)
            ping = tmp / "ping.yml"
            ping.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
            fig["ping_play_s"] = round(statistics.median(
                run_playbook(inventory, {}, playbook=ping, collections=collections).seconds for _ in range(rounds)), 2)
            play(dict(extra, deepflow_agent_state="absent", deepflow_agent_hostagent_remove=True))
    return fig


def table(size: dict, fig: dict) -> str:
    def s(v: float) -> str:
        return f"{v:.2f} s"

    version = next(k for k in size if k.endswith("-linux-x86_64"))
    rows = [("| | single file | venv | target |", "|---|---|---|---|")]
    lines = [
        f"| size of `{version}` | {size[version] / MIB:.1f} MiB | — | ≤ 40 MiB |",
        f"| `--version` | {s(fig['file_version_s'])} (first start, unpacking: {s(fig['file_first_start_s'])}) "
        f"| {s(fig['venv_version_s'])} | — |",
        f"| `status` | {s(fig['file_status_s'])} | {s(fig['venv_status_s'])} | — |",
        f"| no-op `install` | {s(fig['file_noop_install_s'])} | {s(fig['venv_noop_install_s'])} | ≤ 0.3 s (file) |",
        f"| launcher, start to agent exec (ExecStartPre + ExecStart) | {s(fig['file_launcher_s'])} | "
        f"{s(fig['venv_launcher_s'])} | ≤ venv + 0.3 s (over the venv's: "
        f"{fig['file_launcher_s'] - fig['venv_launcher_s']:+.2f} s) |",
        f"| role converge, fresh host (collection tarball, single file) | {s(fig['converge_fresh_s'])} "
        f"(changed={fig['converge_fresh_changed']}) | — | ≤ 10 s |",
        f"| role converge, converged host | {s(fig['converge_noop_s'])} (changed={fig['converge_noop_changed']}) "
        "| — | ≤ 2 s, changed=0 |",
        f"| a play with one `ping` (ansible-playbook's floor on that connection) | {s(fig['ping_play_s'])} | — | — |",
    ]
    def human(n: int) -> str:
        return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / 1024:.1f} KiB"

    art = ["", "| artifact | size |", "|---|---|"] + [f"| `{k}` | {human(v)} |" for k, v in size.items()]
    return "\n".join(list(rows[0]) + lines + art)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dist", default="", help="dist dir (default: this checkout's, built if missing)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    dist = dist_dir(args.dist)
    size = sizes(dist)
    t0 = time.monotonic()
    fig = host_figures(dist / next(k for k in size if k.endswith("-linux-x86_64")), args.rounds)
    fig.update(converge_figures(dist, args.rounds))
    fig = {k: round(v, 3) if isinstance(v, float) else v for k, v in fig.items()}
    fig["load_avg_1min"] = round(os.getloadavg()[0], 2)
    fig["bench_seconds"] = round(time.monotonic() - t0, 1)
    print(table(size, fig))
    print(f"\nload average {fig['load_avg_1min']} on {os.cpu_count()} CPUs; median of {args.rounds}")
    if args.json:
        print(json.dumps({"sizes": size, "figures": fig}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
