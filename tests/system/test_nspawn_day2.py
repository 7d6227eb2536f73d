"""Day 2 on one Debian 12 host booted under systemd-nspawn, with hostagent as the single file at
/usr/sbin/hostagent (as the .deb puts it), the tests in order:

1. hostagent's own upgrade: the previous release's single file (built from its git tag, tests/dist.py)
   installs the agent; the new single file replaces it; status is clean and the agent keeps running;
   a restart runs it through the new launcher (clean environment, the watcher opt-out); a re-install
   changes at most the unit and migrates the manifest; uninstall leaves the host as before.
2. The server's remote upgrade with the default (auto: allow, as no package owns the double): the double does what synchronizer.rs does
   (<exe>.test beside /proc/self/exe, rename over <exe>, exit 3); the agent comes back on the new
   version as its user with exactly the profile's caps, nothing left beside it, status clean, doctor
   says allow and why; uninstall leaves the host as before.
3. With --remote-upgrade deny the same upgrade fails as it does for DeepFlow's read-only binary, the agent
   keeps running, doctor says deny.
4. A single file that cannot use its cache leaves no unpacked copy in /tmp, however often the agent
   restarts.
5. hostagent's own upgrade by its .deb: the previous release's package, then this one's.
(The remote upgrade under SysV init and OpenRC: test_nspawn_sysv_openrc.py, on its lifecycle hosts.)
"""
from __future__ import annotations

import hashlib
import json
import time

import pytest

from tests.hostsnap import diff as snapshot_diff
from tests.system.conftest import PROFILES, caps_mask, comparable
from tests.system.hostcmd import DOUBLE, INSTALL, UNINSTALL
from tests.system.test_nspawn_e2e import DOUBLE_STATUS, check_double, hostagent, wait_agent

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

HOSTAGENT = "/usr/sbin/hostagent"
UPGRADABLE = "/var/lib/deepflow-agent/deepflow-agent"
TRIGGER_DIR = "/run/deepflow-agent-double"
NEW_VERSION = "2.0"
PROFILE_MASK = caps_mask(PROFILES["deepflow-doc"])


@pytest.fixture(scope="module")
def old_file():
    from tests.dist import previous_single_file

    return previous_single_file()


@pytest.fixture(scope="module")
def host(old_file, single_file):
    from tests.images.nspawn import nspawn_host

    with nspawn_host(wheelhouse=False, single_file=old_file) as h:
        yield h


def snap(host) -> dict:
    """The host, without hostagent's own file (the test replaces it) and dpkg's own records."""
    s = comparable(host.snapshot())
    return dict(s, files={p: e for p, e in s["files"].items()
                          if p != HOSTAGENT and not p.startswith(("/var/lib/dpkg/", "/usr/share/doc/hostagent"))})


def status(host) -> dict:
    rc, report, err = hostagent(host, "hostagent status --json")
    assert rc == 0 and report["ok"], (report, err)
    return report["data"]


def doctor(host) -> dict:
    rc, report, err = hostagent(host, "hostagent doctor --json")
    return report["data"]


def replace_hostagent(host, path) -> None:
    """As dpkg does: a new file beside it, renamed over it."""
    host.put(HOSTAGENT + ".new", path.read_bytes(), 0o755)
    host.run(f"mv {HOSTAGENT}.new {HOSTAGENT}").check()


def assert_clean_env(status_: dict) -> None:
    env = status_["env"]
    assert env["K8S_WATCH_POLICY"] == "watch-disabled", env
    assert env["LD_LIBRARY_PATH"] is None and env["bundle"] == [], env
    # A program the agent runs loads the host's libc, not the one inside the single file.
    assert status_["child_libc"].startswith(("/usr/lib/", "/lib/")), status_["child_libc"]


def restarts_without_cache(host, times: int = 2) -> list[str]:
    """Restart the agent with the single file's cache made untrusted (group-writable), so each start
    unpacks privately; returns the unpacked copies left in /tmp (the host's and the unit's private one)."""
    host.run("chmod g+w /var/cache/hostagent").check()
    try:
        for _ in range(times):
            host.run("systemctl restart deepflow-agent").check()
            check_double(host, wait_agent(host))
        return host.run("find /tmp /var/tmp -maxdepth 4 -name 'hostagent-*'").stdout.split()
    finally:
        host.run("chmod g-w /var/cache/hostagent").check()


def after_the_switch(host, first: dict, old_manifest: dict, status, install: str = INSTALL) -> None:
    """hostagent replaced under a running agent (the file, a package): the agent is untouched and the
    new hostagent reads the old manifest; a restart goes through the new launcher; the next install
    changes at most the service and writes the manifest in the current schema."""
    from hostagent import manifest

    assert status()["drift"] == []
    assert host.run("pgrep -x deepflow-agent").stdout.split() == [str(first["pid"])]

    host.run("systemctl restart deepflow-agent").check()
    after = wait_agent(host)
    assert after["pid"] != first["pid"]
    check_double(host, after)
    assert_clean_env(after)  # the new launcher started it
    assert status()["drift"] == []

    rc, report, err = hostagent(host, install)
    assert (rc, report["ok"]) == (0, True), (report, err)
    applied = {s["id"].split(":")[0] for s in report["steps"] if s["status"] == "applied"}
    assert applied <= {"service-definition", "service"}, report["steps"]
    migrated = json.loads(host.get("/var/lib/hostagent/manifest.json"))
    assert (old_manifest["version"], migrated["version"]) == (2, manifest.VERSION), "v0.1.0 wrote manifest v2"
    check_double(host, wait_agent(host))
    assert status()["drift"] == []


def test_hostagent_upgrade_from_the_previous_release(host, single_file):
    before = snap(host)
    rc, report, err = hostagent(host, INSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    # What this change fixes, seen on the previous release: the agent gets the bundle's environment (a
    # program it runs loads the bundled libc) and no watcher opt-out; a copy of the file is left per start.
    old = wait_agent(host)
    assert old["env"]["K8S_WATCH_POLICY"] is None and old["env"]["bundle"], old["env"]
    assert old["child_libc"].startswith("/var/cache/hostagent/"), old["child_libc"]
    left = restarts_without_cache(host)
    assert left, "v0.1.0 left no unpacked copy in /tmp: this test cannot see the fix"
    host.run("rm -rf " + " ".join(left)).check()
    first = wait_agent(host)
    check_double(host, first)
    print(f"\nv0.1.0's agent: env {old['env']}, a child's libc {old['child_libc']}, left in /tmp {left}")
    old_manifest = json.loads(host.get("/var/lib/hostagent/manifest.json"))

    replace_hostagent(host, single_file)
    assert host.run(f"sha256sum {HOSTAGENT}").stdout.split()[0] == hashlib.sha256(single_file.read_bytes()).hexdigest()
    after_the_switch(host, first, old_manifest, lambda: status(host))

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert snapshot_diff(before, snap(host)) == []


def trigger_upgrade(host, version: str) -> None:
    """The server's Upgrade: the double streams NEW_BINARY in and expects VERSION_PREFIX from -v."""
    from tests.fixtures.build import build_agent_double

    new = build_agent_double(version=version)
    host.put(f"{TRIGGER_DIR}/new-agent", new.read_bytes(), 0o644)
    host.put(f"{TRIGGER_DIR}/upgrade", f"{TRIGGER_DIR}/new-agent\ndeepflow-agent-double {version}\n")


def wait_status(host, done, timeout: float = 40) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = json.loads(host.run(f"cat {DOUBLE_STATUS}").stdout)
        except ValueError:
            last = {}
        if last and done(last):
            return last
        time.sleep(0.3)
    pytest.fail(f"double never got there: {last}\n{host.journal()}")


def test_remote_upgrade_as_the_agents_user(host):
    before = snap(host)
    rc, report, err = hostagent(host, INSTALL)  # the default, auto: no package owns the binary, so allow
    assert (rc, report["ok"]) == (0, True), (report, err)
    first = wait_agent(host)
    check_double(host, first)
    assert host.run("stat -c '%U:%G %a' /var/lib/deepflow-agent").stdout.split() == ["root:deepflow", "770"]
    assert "ExecStart" in host.get("/etc/systemd/system/deepflow-agent.service")

    trigger_upgrade(host, NEW_VERSION)
    exited = wait_status(host, lambda s: s["state"] == "upgraded")
    assert exited["exit_code"] == 3 and not exited["upgrade_error"], exited
    # Restart=always brings the new binary back (RestartSec=10).
    now = wait_status(host, lambda s: s["state"] == "running" and NEW_VERSION in s["version"], timeout=60)
    check_double(host, wait_agent(host))
    assert int(now["CapEff"], 16) == PROFILE_MASK
    assert host.run(f"{UPGRADABLE} -v").stdout.startswith(f"deepflow-agent-double {NEW_VERSION}")
    # The launcher took the agent's file over: root:group 0750 and exactly the profile, nothing beside it.
    assert host.run(f"stat -c '%U:%G %a' {UPGRADABLE}").stdout.split() == ["root:deepflow", "750"]
    assert host.run(f"getcap {UPGRADABLE}").stdout.strip()
    assert host.run("ls -A /var/lib/deepflow-agent").stdout.split() == ["deepflow-agent"]
    assert status(host)["drift"] == []
    upgrade = doctor(host)["remote_upgrade"]
    assert (upgrade["mode"], upgrade["binary"], upgrade["leftovers"]) == ("allow", UPGRADABLE, [])
    assert upgrade["why"] == f"auto: no dpkg/rpm package owns {DOUBLE}"
    assert status(host)["remote_upgrade"] == {"mode": "allow", "why": upgrade["why"]}
    # A re-run keeps the upgraded agent; /usr/sbin/deepflow-agent was never touched.
    rc, report, err = hostagent(host, INSTALL)
    assert (rc, report["changed"]) == (0, False), report["steps"]
    assert host.run("test -e /usr/sbin/deepflow-agent").rc != 0

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert snapshot_diff(before, snap(host)) == []


def test_remote_upgrade_denied_keeps_the_agent_running(host):
    before = snap(host)
    host.run(f"rm -f {TRIGGER_DIR}/upgrade").check()
    rc, report, err = hostagent(host, INSTALL + " --remote-upgrade deny")
    assert (rc, report["ok"]) == (0, True), (report, err)
    first = wait_agent(host)
    trigger_upgrade(host, NEW_VERSION)
    failed = wait_status(host, lambda s: bool(s["upgrade_error"]))
    assert "/usr/sbin/deepflow-agent.test" in failed["upgrade_error"], failed
    assert failed["state"] == "running" and failed["pid"] == first["pid"]
    assert host.run("ls /usr/sbin/deepflow-agent.test").rc != 0
    assert (doctor(host)["remote_upgrade"]["mode"], doctor(host)["remote_upgrade"]["why"]) == ("deny", "--remote-upgrade deny")
    host.run(f"rm -f {TRIGGER_DIR}/upgrade").check()
    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert snapshot_diff(before, snap(host)) == []


def test_no_unpacked_copy_stays_in_tmp(host):
    """The cache made untrusted (group-writable): each start unpacks privately, and cleans up."""
    rc, report, err = hostagent(host, INSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    assert restarts_without_cache(host, times=3) == []
    assert_clean_env(json.loads(host.get(DOUBLE_STATUS)))
    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)


def test_hostagent_deb_upgrade(host, dist):
    from tests.dist import previous_release, version

    old_deb = sorted(previous_release().glob("hostagent_*_amd64.deb"))[0]
    host.put("/root/old.deb", old_deb.read_bytes())
    host.put("/root/new.deb", (dist / f"hostagent_{version()}_amd64.deb").read_bytes())
    before = snap(host)
    host.run("dpkg -i /root/old.deb").check()
    rc, report, err = hostagent(host, INSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    first = wait_agent(host)

    host.run("dpkg -i /root/new.deb").check()  # its postinst drops the old version's unpacked copy
    assert status(host)["drift"] == []
    assert host.run("pgrep -x deepflow-agent").stdout.split() == [str(first["pid"])]
    host.run("systemctl restart deepflow-agent").check()
    after = wait_agent(host)
    check_double(host, after)
    assert_clean_env(after)
    rc, report, err = hostagent(host, INSTALL)
    applied = {s["id"].split(":")[0] for s in report["steps"] if s["status"] == "applied"}
    assert rc == 0 and applied <= {"service-definition", "service"}, report["steps"]

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    host.run("dpkg -P hostagent").check()
    assert snapshot_diff(before, snap(host)) == []

