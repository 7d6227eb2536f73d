"""The agent's whole lifecycle on hosts whose services SysV init (an /etc/inittab respawn line) or OpenRC
(an openrc-run script under supervise-daemon) runs, booted under systemd-nspawn from Debian's own
sysvinit-core and openrc packages: install (from the wheelhouse venv) → the double runs as the user
with the profile's caps in its cgroups → install again changes nothing → status and doctor → the init
respawns a killed agent → reboot → the server's remote upgrade (the double does what synchronizer.rs
does; exit 3) → the init starts the new version, as the user with the profile's caps, nothing left
beside it → uninstall → the host equals its snapshot."""
from __future__ import annotations

import time

import pytest

from tests.hostsnap import diff as snapshot_diff
from tests.system.conftest import comparable
from tests.system.hostcmd import INSTALL, UNINSTALL, snapshot
from tests.system.test_nspawn_day2 import NEW_VERSION, UPGRADABLE, trigger_upgrade, wait_status
from tests.system.test_nspawn_e2e import check_double, hostagent, wait_agent

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

DEFINITION = {"sysvinit": "/etc/inittab", "openrc": "/etc/init.d/deepflow-agent"}
EXEC_LINE = {"sysvinit": "/etc/deepflow-agent/hostagent-exec", "openrc": "/etc/init.d/deepflow-agent"}  # the agent's command


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
    # No timer here (install --metrics-textfile is refused), but doctor writes the metrics from any scheduler.
    host.run("hostagent doctor --quiet --prometheus /var/tmp/hostagent.prom").check()
    metrics = host.run("cat /var/tmp/hostagent.prom && rm /var/tmp/hostagent.prom").check().stdout
    for line in ("hostagent_agent_up 1", "hostagent_agent_capabilities_as_profile 1", "hostagent_agent_in_cgroup 1",
                 'hostagent_agent_running_as_user{user="deepflow"} 1', "hostagent_service_definition_as_installed 1"):
        assert line in metrics.splitlines(), metrics

    # The init brings back an agent that exits (a crash; exit 3 after a self-upgrade).
    host.run(f"kill {status['pid']}").check()
    check_double(host, _respawned(host, str(status["pid"])))

    # Reboot: the cgroup dirs are gone until `hostagent exec` recreates them at the init's start.
    host.reboot()
    status = wait_agent(host, timeout=60)
    check_double(host, status)

    # The server's remote upgrade, as synchronizer.rs does it (<exe>.test beside the binary, rename, exit
    # 3), where the default (auto: no package owns the double) runs the agent: the init starts it again
    # (SysV: the inittab line respawns it; OpenRC: supervise-daemon), the launcher takes the agent's new
    # file over (root:<group> 0750, the profile's caps, which the new file lacked), nothing left beside it.
    assert f"-- {UPGRADABLE} -f" in host.run(f"cat {EXEC_LINE[init]}").check().stdout
    assert status["env"]["K8S_WATCH_POLICY"] == "watch-disabled"
    trigger_upgrade(host, NEW_VERSION)
    exited = wait_status(host, lambda s: s["state"] == "upgraded" or NEW_VERSION in s["version"], timeout=60)
    assert not exited["upgrade_error"], exited
    wait_status(host, lambda s: s["state"] == "running" and NEW_VERSION in s["version"], timeout=60)
    upgraded = wait_agent(host)
    check_double(host, upgraded)
    assert str(upgraded["pid"]) != str(status["pid"])
    assert host.run(f"{UPGRADABLE} -v").stdout.startswith(f"deepflow-agent-double {NEW_VERSION}")
    assert host.run(f"stat -c '%U:%G %a' {UPGRADABLE}").stdout.split() == ["root:deepflow", "750"]
    assert host.run(f"getcap {UPGRADABLE}").stdout.strip()
    assert host.run("ls -A /var/lib/deepflow-agent").stdout.split() == ["deepflow-agent"]
    rc, report, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and report["data"]["drift"] == [], report["data"]
    assert report["data"]["remote_upgrade"]["mode"] == "allow"

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert host.run("pgrep -x deepflow-agent").rc == 1
    assert snapshot_diff(before, comparable(snapshot(host))) == []


def test_k8s_sync_install_is_refused_with_one_line(host) -> None:
    rc, out, err = host.run("hostagent k8s-sync install --controller-ip 127.0.0.1 --kubeconfig /nonexistent --dry-run")
    assert rc == 2 and err.strip().splitlines() == [err.strip()] and "needs systemd" in err, err


def test_metrics_textfile_is_refused_with_one_line(host) -> None:
    before = comparable(snapshot(host))
    rc, out, err = host.run(INSTALL.replace(" --json", "") + " --metrics-textfile /var/tmp")
    assert rc == 2 and err.strip().splitlines() == [err.strip()] and "needs systemd's timers" in err, err
    assert snapshot_diff(before, comparable(snapshot(host))) == []
