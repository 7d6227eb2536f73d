"""End to end on a Debian 12 host booted under systemd-nspawn (hybrid cgroups, like this machine).

snapshot → install (agent double) → host suite → double's own view → install again (no change)
→ reboot → suite → self-upgrade replaces the binary (caps gone) + restart → caps back → uninstall
→ suite --state=absent → snapshot equal.

The host suite (test_host_state.py) runs from this machine through testinfra's ssh backend,
against the container's sshd on 127.0.0.1. hostagent is installed in the container from a
wheelhouse, the README's way.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hostsnap import diff as snapshot_diff
from tests.system.conftest import PROFILES, caps_mask, comparable
from tests.system.hostcmd import INSTALL, UNINSTALL, snapshot

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
DOUBLE_STATUS = "/var/log/deepflow-agent/agent-double.json"
PROFILE_MASK = caps_mask(PROFILES["deepflow-doc"])
DOUBLE_ACTIONS = ("netns", "mlockall", "af_packet", "cgroup_cpu_procs", "cgroup_memory_procs",
                  "cgroup_cpu_period", "cgroup_cpu_quota", "cgroup_memory_limit")


@pytest.fixture(scope="module")
def host():
    from tests.images.nspawn import nspawn_host

    with nspawn_host(ssh=True) as h:
        yield h


def hostagent(host, args: str) -> tuple[int, dict, str]:
    """Run the CLI on the host; its --json contract: one object on stdout."""
    rc, out, err = host.run(args, timeout=180)
    try:
        report = json.loads(out)
    except ValueError:
        pytest.fail(f"{args}: rc={rc}, stdout is not one JSON object:\n{out}\nstderr:\n{err}\n"
                    f"journal:\n{host.journal()}")
    return rc, report, err


def run_suite(host, tmp_path: Path, *extra: str) -> float:
    """The testinfra host suite against the container, from this machine; returns its wall time."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/system/test_host_state.py", "-q", "-p", "no:cacheprovider",
         f"--hosts={host.testinfra_host}", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"host suite failed:\n{proc.stdout}\njournal:\n{host.journal()}"
    return time.monotonic() - t0


def wait_agent(host, timeout: float = 30) -> dict:
    """The double's status once the running agent (current pid) has done its start-up work."""
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        pids = host.run("pgrep -x deepflow-agent").stdout.split()
        raw = host.run(f"cat {DOUBLE_STATUS}").stdout
        try:
            status = json.loads(raw)
        except ValueError:
            status = {}
        if pids and status.get("state") == "running" and str(status.get("pid")) in pids:
            return status
        time.sleep(0.2)
    pytest.fail(f"agent not running after {timeout}s; status={status}\njournal:\n{host.journal()}")


def check_double(host, status: dict) -> None:
    uid = int(host.run("id -u deepflow").check().stdout)
    assert (status["uid"], status["euid"]) == (uid, uid)
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[field], 16) == PROFILE_MASK, (field, status[field])
    failed = {k: v for k, v in status["actions"].items() if k in DOUBLE_ACTIONS and not v["ok"]}
    assert not failed, failed
    assert set(DOUBLE_ACTIONS) <= set(status["actions"]), sorted(status["actions"])
    assert status["cgroup_outcome"] == "limited", status


def reinstall_reboot_upgrade(host, tmp_path: Path, timings: dict, install: str = INSTALL) -> None:
    """The middle of the lifecycle on an installed host: install again (nothing changes) → reboot →
    suite → the agent binary replaced as a self-upgrade does (caps gone) + restart → caps back → suite."""
    t0 = time.monotonic()
    rc, report, err = hostagent(host, install)
    timings["reinstall"] = time.monotonic() - t0
    assert (rc, report["ok"], report["changed"]) == (0, True, False), report
    assert all(s["status"] == "unchanged" for s in report["steps"]), report["steps"]

    # Reboot: /sys/fs/cgroup/*/deepflow-agent are gone until the unit's start recreates them.
    host.reboot()
    check_double(host, wait_agent(host))
    run_suite(host, tmp_path)

    # Self-upgrade: a new file renamed over the binary (where the default, auto, runs it: no package
    # owns the double) has no file capabilities.
    # cp -p keeps owner and mode (root:deepflow 0750) but not the security.capability xattr.
    host.run("cp -p /var/lib/deepflow-agent/deepflow-agent /var/lib/deepflow-agent/deepflow-agent.new && echo upgraded >> /var/lib/deepflow-agent/deepflow-agent.new && mv /var/lib/deepflow-agent/deepflow-agent.new /var/lib/deepflow-agent/deepflow-agent").check()
    assert host.run("getcap /var/lib/deepflow-agent/deepflow-agent").stdout.strip() == ""
    host.run("systemctl restart deepflow-agent").check()
    check_double(host, wait_agent(host))
    run_suite(host, tmp_path)
    assert host.run("getcap /var/lib/deepflow-agent/deepflow-agent").stdout.strip()


def lifecycle(host, tmp_path: Path, take_snapshot, *, suite_has_python: bool = True, after_install=None) -> dict:
    """install → suite → reinstall_reboot_upgrade → uninstall → suite --state=absent → snapshot equal.
    take_snapshot: the host's hostsnap (inside it, or from outside for a host without Python); the
    absent suite compares to it itself only when the host has python3. Returns the timings."""
    timings: dict = {}
    before = comparable(take_snapshot())
    snap_file = tmp_path / "before.json"
    snap_file.write_text(json.dumps(before))

    t0 = time.monotonic()
    rc, report, err = hostagent(host, INSTALL)
    timings["install"] = time.monotonic() - t0
    assert (rc, report["ok"], report["error"]) == (0, True, None), (report, err, host.journal())
    assert report["command"] == "install" and report["changed"] is True and report["dry_run"] is False
    assert report["steps"] and all(s["status"] == "applied" for s in report["steps"]), report["steps"]
    if after_install is not None:
        after_install()

    timings["suite"] = run_suite(host, tmp_path)
    check_double(host, wait_agent(host))

    reinstall_reboot_upgrade(host, tmp_path, timings)

    t0 = time.monotonic()
    rc, report, err = hostagent(host, UNINSTALL)
    timings["uninstall"] = time.monotonic() - t0
    assert (rc, report["ok"], report["error"]) == (0, True, None), (report, err)
    assert report["command"] == "uninstall" and report["changed"] is True

    run_suite(host, tmp_path, "--state=absent", *([f"--snapshot-before={snap_file}"] if suite_has_python else []))
    assert snapshot_diff(before, comparable(take_snapshot())) == []
    return {k: round(v, 2) for k, v in timings.items()}


def test_install_reboot_upgrade_uninstall(host, tmp_path):
    timings = lifecycle(host, tmp_path, lambda: snapshot(host))
    print(f"\ne2e timings: {timings}")


TEXTFILE_DIR = "/var/lib/node_exporter/textfile"
PROM = f"{TEXTFILE_DIR}/hostagent.prom"


def read_metrics(host, newer_than: float = 0, timeout: float = 60) -> dict:
    """The textfile's unlabelled samples once doctor wrote it after newer_than (host's Unix time)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = host.run(f"cat {PROM}").stdout
        found = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                found[key.split("{")[0]] = float(value)
        if found.get("hostagent_doctor_last_run_timestamp_seconds", 0) > newer_than:
            return found
        time.sleep(0.5)
    pytest.fail(f"{PROM} not written after {timeout}s:\n{text}\n"
                f"{host.run('systemctl status hostagent-metrics.timer hostagent-metrics.service').stdout}")


def run_doctor_now(host) -> dict:
    """What the timer starts, started now: the metrics of this moment."""
    since = float(host.run("date +%s.%N").check().stdout)
    host.run("systemctl start hostagent-metrics.service").check()
    return read_metrics(host, since)


def test_metrics_timer_writes_flips_and_goes_with_uninstall(host):
    """install --metrics-textfile: the timer writes the textfile (root's, 0644) without being asked; the
    values flip when the agent stops or runs with other caps; uninstall removes timer, service and file."""
    host.run(f"mkdir -p {TEXTFILE_DIR}").check()  # node_exporter's dir: the admin's, before hostagent
    before = comparable(snapshot(host))
    rc, report, err = hostagent(host, f"{INSTALL} --metrics-textfile {TEXTFILE_DIR}")
    assert (rc, report["ok"]) == (0, True), (report, err, host.journal())
    assert host.run("systemctl is-enabled hostagent-metrics.timer").stdout.strip() == "enabled"
    check_double(host, wait_agent(host))

    healthy = read_metrics(host)  # the timer's first run, on its own
    assert host.run(f"stat -c '%U:%G %a' {PROM}").stdout.split() == ["root:root", "644"]
    assert healthy["hostagent_agent_up"] == 1 and healthy["hostagent_agent_running_as_root"] == 0, healthy
    for name in ("hostagent_agent_running_as_user", "hostagent_agent_capabilities_as_profile", "hostagent_agent_in_cgroup",
                 "hostagent_service_definition_as_installed"):
        assert healthy[name] == 1, (name, healthy)
    assert healthy["hostagent_drift_problems"] == 0, healthy

    host.run("systemctl stop deepflow-agent").check()
    stopped = run_doctor_now(host)
    assert stopped["hostagent_agent_up"] == 0 and stopped["hostagent_drift_problems"] >= 1, stopped

    # Other caps than the profile's: the unit edited to give the agent one more (one its bounding set has).
    unit = "/etc/systemd/system/deepflow-agent.service"
    host.run(f"sed -i 's/--caps \\([a-z_,]*\\)/--caps \\1,cap_setuid/' {unit} && systemctl daemon-reload && "
             "systemctl start deepflow-agent").check()
    wait_agent(host)
    edited = run_doctor_now(host)
    assert edited["hostagent_agent_up"] == 1 and edited["hostagent_agent_capabilities_as_profile"] == 0, edited
    assert edited["hostagent_service_definition_as_installed"] == 0, edited

    rc, report, err = hostagent(host, f"{INSTALL} --metrics-textfile {TEXTFILE_DIR}")  # puts it all back
    assert (rc, report["ok"]) == (0, True), (report, err)
    check_double(host, wait_agent(host))
    assert run_doctor_now(host)["hostagent_agent_capabilities_as_profile"] == 1

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert host.run(f"ls -A {TEXTFILE_DIR}").stdout.split() == []
    assert "hostagent-metrics" not in host.run("systemctl list-unit-files 'hostagent-metrics*'").stdout
    assert snapshot_diff(before, comparable(snapshot(host))) == []
    host.run(f"rmdir {TEXTFILE_DIR} {os.path.dirname(TEXTFILE_DIR)}").check()
