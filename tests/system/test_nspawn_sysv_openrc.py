"""The agent's whole lifecycle on hosts whose services SysV init (an /etc/inittab respawn line) or OpenRC
(an openrc-run script under supervise-daemon) runs, booted under systemd-nspawn from Debian's own
sysvinit-core and openrc packages: install (from the wheelhouse venv) → the double runs as the user
with the profile's caps in its cgroups → install again changes nothing → status and doctor → the init
respawns a killed agent → reboot → the self-upgrade clears the caps and the next start restores them →
uninstall → the host equals its snapshot."""
from __future__ import annotations

import time

import pytest

from tests.hostsnap import diff as snapshot_diff
from tests.system.conftest import comparable
from tests.system.hostcmd import INSTALL, UNINSTALL, snapshot
from tests.system.test_nspawn_e2e import check_double, hostagent, wait_agent

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

DEFINITION = {"sysvinit": "/etc/inittab", "openrc": "/etc/init.d/deepflow-agent"}


@pytest.fixture(scope="module", params=["sysvinit", "openrc"])
def host(request):
    from tests.images.nspawn import nspawn_host

    with nspawn_host(init=request.param) as h:
        yield h


def _restart(host) -> None:
    if host.init == "openrc":
        host.run("rc-service deepflow-agent restart", timeout=60).check()
    else:  # SysV: PID 1 respawns what it loses
        host.run("pkill -x deepflow-agent").check()


def _respawned(host, old_pid: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = wait_agent(host, timeout=timeout)
        if str(status["pid"]) != old_pid:
            return status
        time.sleep(0.2)
    pytest.fail(f"the agent was not respawned (pid still {old_pid})")


def test_lifecycle(host) -> None:
    init = host.init
    before = comparable(snapshot(host))

    rc, report, err = hostagent(host, INSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err, host.console_tail())
    ids = [s["id"] for s in report["steps"]]
    assert ids[-2].startswith("inittab:" if init == "sysvinit" else "service-definition:/etc/init.d/"), ids
    assert all(s["status"] == "applied" for s in report["steps"]), report["steps"]
    definition = host.run(f"cat {DEFINITION[init]}").check().stdout
    assert ("dfha:2345:respawn:" if init == "sysvinit" else "supervisor=supervise-daemon") in definition
    status = wait_agent(host)
    check_double(host, status)

    rc, report, _ = hostagent(host, INSTALL)
    assert (rc, report["changed"]) == (0, False), report["steps"]
    rc, report, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and report["data"]["drift"] == [], report["data"]
    rc, report, _ = hostagent(host, "hostagent doctor --json")
    assert report["data"]["init"] == init
    assert not [p for p in report["data"]["problems"] if "controller" not in p], report["data"]["problems"]

    # The init brings back an agent that exits (a crash; exit 3 after a self-upgrade).
    host.run(f"kill {status['pid']}").check()
    check_double(host, _respawned(host, str(status["pid"])))

    # Reboot: the cgroup dirs are gone until `hostagent exec` recreates them at the init's start.
    host.reboot()
    status = wait_agent(host, timeout=60)
    check_double(host, status)

    # The self-upgrade's new file has no capabilities; the next start restores them.
    host.run("cp -p /var/lib/deepflow-agent/deepflow-agent /var/lib/deepflow-agent/deepflow-agent.new && echo upgraded >> /var/lib/deepflow-agent/deepflow-agent.new && mv /var/lib/deepflow-agent/deepflow-agent.new /var/lib/deepflow-agent/deepflow-agent").check()
    assert host.run("getcap /var/lib/deepflow-agent/deepflow-agent").stdout.strip() == ""
    _restart(host)
    check_double(host, _respawned(host, str(status["pid"])))
    assert host.run("getcap /var/lib/deepflow-agent/deepflow-agent").stdout.strip()

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert host.run("pgrep -x deepflow-agent").rc == 1
    assert snapshot_diff(before, comparable(snapshot(host))) == []


def test_k8s_sync_install_is_refused_with_one_line(host) -> None:
    rc, out, err = host.run("hostagent k8s-sync install --controller-ip 127.0.0.1 --kubeconfig /nonexistent --dry-run")
    assert rc == 2 and err.strip().splitlines() == [err.strip()] and "needs systemd" in err, err
