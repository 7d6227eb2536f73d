"""The server's remote upgrade on a Debian 12 host whose services OpenRC runs (systemd-nspawn): no
ProtectSystem, supervise-daemon starts the agent again after its exit 3, the launcher takes the new file
over as under systemd (tests/system/test_nspawn_day2.py). Its own module: the nspawn hosts share one
cgroup lock, which test_nspawn_day2.py's module host holds until its module ends."""
from __future__ import annotations

import pytest

from tests.hostsnap import diff as snapshot_diff
from tests.system.hostcmd import INSTALL, UNINSTALL
from tests.system.test_nspawn_day2 import NEW_VERSION, UPGRADABLE, snap, status, trigger_upgrade, wait_status
from tests.system.test_nspawn_e2e import check_double, hostagent, wait_agent

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]


def test_remote_upgrade_under_openrc():
    """Without systemd (no ProtectSystem): supervise-daemon respawns the agent after its exit 3, and the
    launcher takes the new file over the same way."""
    from tests.images.nspawn import nspawn_host

    with nspawn_host(init="openrc") as h:
        before = snap(h)
        rc, report, err = hostagent(h, INSTALL + " --remote-upgrade allow")
        assert (rc, report["ok"]) == (0, True), (report, err, h.console_tail())
        assert f"-- {UPGRADABLE} -f" in h.get("/etc/init.d/deepflow-agent")
        first = wait_agent(h)
        assert first["env"]["K8S_WATCH_POLICY"] == "watch-disabled"
        trigger_upgrade(h, NEW_VERSION)
        wait_status(h, lambda s: s["state"] == "running" and NEW_VERSION in s["version"], timeout=60)
        check_double(h, wait_agent(h))
        assert h.run(f"stat -c '%U:%G %a' {UPGRADABLE}").stdout.split() == ["root:deepflow", "750"]
        assert h.run("ls -A /var/lib/deepflow-agent").stdout.split() == ["deepflow-agent"]
        assert status(h)["drift"] == []
        rc, report, err = hostagent(h, UNINSTALL)
        assert (rc, report["ok"]) == (0, True), (report, err)
        assert snapshot_diff(before, snap(h)) == []
