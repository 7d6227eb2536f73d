"""Day 2 with DeepFlow's own packages on a Debian 12 host under systemd-nspawn (issue 16).

The packages are stand-ins built from DeepFlow's packaging files (tests/fixtures/deepflow_packages.py,
the agent double as the binary): the .deb owns /etc/systemd/system/deepflow-agent.service, the .rpm
(installed with Debian's rpm, test_nspawn_packages_rpm.py: one booted host per module, as the nspawn
hosts take a lock) /lib/systemd/system/deepflow-agent.service.

package installs and starts the agent as root → `hostagent install` takes it over (a drop-in over the
package's unit) → the next release (`dpkg -i` / `rpm -U`) → restart / reboot → still the user, the
profile's caps, hostagent's config → uninstall → the package's files verify clean, its root agent runs
as before → the package is removable; and the package removed while hostagent manages the agent.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.fixtures.deepflow_packages import UNIT
from tests.system.hostcmd import UNINSTALL
from tests.system.test_nspawn_e2e import check_double, hostagent, wait_agent

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

AGENT = "/usr/sbin/deepflow-agent"
TAKE_OVER = f"hostagent install --agent-binary {AGENT} --controller-ip 127.0.0.1 --yes --json"
PACKAGE_DENIES = f"auto: DeepFlow's package deepflow-agent owns {AGENT}, and its upgrades must keep reaching the agent"
DROPIN_DIR = "/etc/systemd/system/deepflow-agent.service.d"
DROPIN = DROPIN_DIR + "/hostagent.conf"
HOSTAGENT_CONFIG = "/etc/deepflow-agent/deepflow-agent.yaml"
# `systemctl show` properties that name the unit, its files or its run, not what it runs with.
RUNTIME = re.compile(
    r"^(Id|Names|FragmentPath|DropInPaths|SourcePath|UnitFileState|UnitFilePreset|LoadState|ActiveState|SubState|"
    r"MainPID|ExecMainPID|ExecMainStatus|ExecMainCode|ControlPID|StatusText|StatusErrno|Result|ReloadResult|CleanResult|"
    r"NRestarts|InvocationID|ControlGroup|ControlGroupId|Before|After|Wants|WantedBy|Requires|RequiredBy|Conflicts|"
    r"Triggers|Job|CanStart|CanStop|CanReload|CanClean|CanFreeze|Markers|Transient|Perpetual|NeedDaemonReload|"
    r"ActiveEnterTimestamp.*|.*Timestamp.*|.*Current|.*Peak|CPUUsageNSec|IP.*(Bytes|Packets)|IO.*(Bytes|Operations)|"
    r"ConditionResult|AssertResult|EffectiveCPUs|EffectiveMemoryNodes|MemoryAvailable|FreezerState|"
    r"GuessMainPID|WatchdogUSec|Slice|RequiresMountsFor|ExitType|StateChangeTimestampMonotonic)$")


@pytest.fixture(scope="module")
def deb_host():
    from tests.fixtures.deepflow_packages import VERSIONS, build_deb
    from tests.images.nspawn import nspawn_host

    with nspawn_host(double=False) as h:
        for i, path in enumerate(build_deb(v) for v in VERSIONS):
            h.put(f"/root/deepflow-agent-{i}.deb", path.read_bytes())
        yield h


def agent_uids(host) -> list[int]:
    return [int(u) for u in host.run("ps -o uid= -C deepflow-agent").stdout.split()]


def wait_root_agent(host, timeout: float = 30) -> None:
    """The package's own service: the agent running as root on DeepFlow's default config."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent_uids(host) == [0]:
            args = host.run("ps -o args= -C deepflow-agent").stdout.split()
            assert args == [AGENT], args
            return
        time.sleep(0.2)
    pytest.fail(f"no root agent: uids {agent_uids(host)}\n{host.journal()}")


def service_state(host) -> tuple[str, str]:
    return (host.run("systemctl is-enabled deepflow-agent").stdout.strip(),
            host.run("systemctl is-active deepflow-agent").stdout.strip())


def check_hostagents(host) -> None:
    """The agent as hostagent runs it: the user, exactly the profile's caps, hostagent's config."""
    status = wait_agent(host)
    check_double(host, status)
    assert status["config_file"] == HOSTAGENT_CONFIG, status


def show(host, unit: str) -> dict[str, str]:
    out = host.run(["systemctl", "show", unit]).check().stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    # Exec*: what runs, not its last run's pid and times.
    return {k: re.sub(r" ; (start_time|stop_time|pid|code|status)=[^;}]*", "", v)
            for k, v in props.items() if not RUNTIME.match(k)}


def check_merged_is_hostagents(host) -> None:
    """systemd's merged unit (package's unit + drop-in) is hostagent's unit in effect: the same
    properties as hostagent's lines alone, loaded as a unit of their own."""
    dropin = host.get(DROPIN)
    head, rest = dropin.split("# Reset what DeepFlow's unit sets", 1)
    alone = head + rest.split("# hostagent's unit:\n", 1)[1]  # without the resets
    host.put("/etc/systemd/system/hostagent-alone.service", alone)
    host.run("systemctl daemon-reload").check()
    try:
        merged, reference = show(host, "deepflow-agent.service"), show(host, "hostagent-alone.service")
        differ = {k: (merged.get(k), reference.get(k)) for k in set(merged) | set(reference)
                  if merged.get(k) != reference.get(k)}
        assert not differ, differ
        verify = host.run("systemd-analyze verify deepflow-agent.service")
        assert verify.rc == 0 and "hostagent.conf" not in verify.stdout + verify.stderr, verify
    finally:
        host.run("rm -f /etc/systemd/system/hostagent-alone.service && systemctl daemon-reload").check()


def take_over(host, unit: str) -> None:
    rc, report, err = hostagent(host, TAKE_OVER)
    assert (rc, report["ok"]) == (0, True), (report, err, host.journal())
    ids = [s["id"] for s in report["steps"]]
    assert f"unit-drop-in:{DROPIN}" in ids and not any(i.startswith("service-definition:") for i in ids), ids
    assert host.get(unit) == UNIT  # the package's file, untouched
    check_hostagents(host)


def test_deb_take_over_upgrade_reboot_uninstall_remove(deb_host) -> None:
    host = deb_host
    host.run("dpkg -i /root/deepflow-agent-0.deb && systemctl enable --now deepflow-agent").check()
    wait_root_agent(host)
    before = service_state(host)
    assert before == ("enabled", "active")

    take_over(host, "/etc/systemd/system/deepflow-agent.service")
    check_merged_is_hostagents(host)
    rc, report, _ = hostagent(host, TAKE_OVER)
    assert (rc, report["changed"]) == (0, False), report["steps"]
    rc, report, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and not report["data"]["drift"], report
    # The default, auto: the package owns the binary, so it stays read-only and the package's upgrades reach it.
    assert report["data"]["remote_upgrade"] == {"mode": "deny", "why": PACKAGE_DENIES}, report["data"]
    rc, report, _ = hostagent(host, "hostagent doctor --json")
    assert (report["data"]["remote_upgrade"]["mode"], report["data"]["remote_upgrade"]["why"]) == ("deny", PACKAGE_DENIES)

    # The next release: prerm stops the agent, dpkg replaces every file, postinst only daemon-reloads.
    host.run("dpkg -i /root/deepflow-agent-1.deb").check()
    assert host.run(f"tail -c 20 {AGENT}").stdout.strip().endswith("1.1")
    rc, report, _ = hostagent(host, "hostagent status --json")
    data = report["data"]
    assert rc == 1 and any("not running" in d for d in data["drift"]), data  # prerm stopped it
    assert any("DeepFlow's package (deepflow-agent) replaced /usr/sbin/deepflow-agent" in n for n in data["notes"]), data
    assert not any("capabilities" in d or "binary" in d for d in data["drift"]), data
    host.run("systemctl restart deepflow-agent").check()
    check_hostagents(host)
    rc, report, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and not report["data"]["drift"] and report["data"]["notes"], report
    rc, report, _ = hostagent(host, "hostagent doctor --json")
    assert not [p for p in report["data"]["problems"] if "controller" not in p], report

    host.reboot()
    check_hostagents(host)

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert host.run("dpkg --verify deepflow-agent").check().stdout == ""
    assert host.run(f"stat -c %U:%G:%a {AGENT}; getcap {AGENT}").stdout.split() == ["root:root:755"]
    assert host.run(f"test -e {DROPIN_DIR}").rc != 0
    assert service_state(host) == before
    wait_root_agent(host)

    host.run("dpkg -r deepflow-agent").check()
    assert host.run(f"test -e {AGENT} || test -e /etc/systemd/system/deepflow-agent.service").rc != 0
    assert agent_uids(host) == []


def test_deb_removed_while_managed(deb_host) -> None:
    host = deb_host
    host.run("dpkg -i /root/deepflow-agent-0.deb && systemctl enable --now deepflow-agent").check()
    wait_root_agent(host)
    take_over(host, "/etc/systemd/system/deepflow-agent.service")

    host.run("dpkg -r deepflow-agent").check()
    rc, report, _ = hostagent(host, "hostagent status --json")
    drift = report["data"]["drift"]
    assert rc == 1 and any("DeepFlow's package removed?" in d for d in drift), drift

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert host.run(f"test -e {DROPIN_DIR} || test -e {AGENT} || test -e /var/lib/hostagent/manifest.json").rc != 0
    assert agent_uids(host) == [] and host.run("systemctl list-unit-files deepflow-agent.service").rc != 0


def test_deb_taken_over_by_the_previous_release_switches_to_the_drop_in(deb_host) -> None:
    """v0.1.0 wrote its full unit over the .deb's; the package's upgrade put its root unit back; this
    release's install puts hostagent's unit in a drop-in instead (it refused before: "installed with
    different settings"), and uninstall leaves the package's files verified and its root agent running."""
    from tests.dist import previous_single_file

    host = deb_host
    old = "/usr/local/sbin/hostagent-0.1.0"  # where the unit may run it (not /tmp: PrivateTmp)
    host.put(old, previous_single_file().read_bytes(), 0o755)
    host.run("dpkg -i /root/deepflow-agent-0.deb && systemctl enable --now deepflow-agent").check()
    wait_root_agent(host)
    before = service_state(host)
    unit = "/etc/systemd/system/deepflow-agent.service"
    rc, report, err = hostagent(host, TAKE_OVER.replace("hostagent", old, 1))
    assert (rc, report["ok"]) == (0, True), (report, err, host.journal())
    assert host.get(unit).startswith("# Installed by hostagent"), "v0.1.0 writes its full unit over the package's"
    check_hostagents(host)

    host.run("dpkg -i /root/deepflow-agent-1.deb").check()  # the package's root unit is back
    assert host.get(unit) == UNIT
    rc, report, err = hostagent(host, TAKE_OVER)
    assert (rc, report["ok"]) == (0, True), (report, err, host.journal())
    assert (report["steps"][0]["id"], report["steps"][0]["status"]) == (f"service-definition:{unit}", "reverted")
    assert f"unit-drop-in:{DROPIN}" in [s["id"] for s in report["steps"]]
    assert host.get(unit) == UNIT and host.run("dpkg --verify deepflow-agent").check().stdout == ""
    check_hostagents(host)
    check_merged_is_hostagents(host)
    rc, report, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and not report["data"]["drift"], report
    rc, report, _ = hostagent(host, TAKE_OVER)
    assert (rc, report["changed"]) == (0, False), report["steps"]

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert host.run("dpkg --verify deepflow-agent").check().stdout == ""
    assert host.run(f"test -e {DROPIN_DIR}").rc != 0
    assert service_state(host) == before
    wait_root_agent(host)
    host.run(f"dpkg -r deepflow-agent && rm -rf {old} /var/cache/hostagent").check()
