"""DeepFlow's .rpm layout on a Debian 12 host under systemd-nspawn, installed with Debian's rpm
(`--force-debian --nodeps`): the unit in /lib/systemd/system, %post daemon-reload + try-restart, %preun
stop + disable on removal. The .deb and what both share: test_nspawn_packages.py."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from tests.system.hostcmd import UNINSTALL
from tests.system.test_nspawn_e2e import hostagent
from tests.system.test_nspawn_packages import (
    AGENT,
    PACKAGE_DENIES,
    agent_uids,
    check_hostagents,
    check_merged_is_hostagents,
    service_state,
    take_over,
    wait_root_agent,
)

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]


@pytest.fixture(scope="module")
def rpm_host():
    from tests.fixtures.deepflow_packages import VERSIONS, build_rpm
    from tests.images.nspawn import NSPAWN_RECIPE, NspawnHost, missing_requirement

    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    recipe = dataclasses.replace(NSPAWN_RECIPE, name="nspawn-rpm", packages=NSPAWN_RECIPE.packages + ("rpm",))
    with NspawnHost(recipe) as h:
        for i, path in enumerate(build_rpm(v) for v in VERSIONS):
            h.put(f"/root/deepflow-agent-{i}.rpm", path.read_bytes())
        yield h



def test_rpm_take_over_upgrade_uninstall_remove(rpm_host) -> None:
    host = rpm_host
    rpm = "rpm --force-debian --nodeps"
    host.run(f"{rpm} -i /root/deepflow-agent-0.rpm && systemctl enable --now deepflow-agent").check()
    wait_root_agent(host)
    before = service_state(host)

    take_over(host, "/lib/systemd/system/deepflow-agent.service")
    check_merged_is_hostagents(host)

    # %post: daemon-reload + try-restart: the agent comes back by itself, hostagent's.
    host.run(f"{rpm} -U /root/deepflow-agent-1.rpm").check()
    assert host.run(f"tail -c 20 {AGENT}").stdout.strip().endswith("1.1")
    check_hostagents(host)
    rc, report, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and not report["data"]["drift"], report
    assert any(n.startswith("DeepFlow's package (deepflow-agent) replaced /usr/sbin/deepflow-agent")
               for n in report["data"]["notes"]), report["data"]["notes"]
    # The default, auto, found the .rpm owning the binary (rpm -qf, rpm -V): read-only, the package's upgrades reach it.
    assert report["data"]["remote_upgrade"] == {"mode": "deny", "why": PACKAGE_DENIES}, report["data"]
    host.run("systemctl restart deepflow-agent").check()
    check_hostagents(host)

    rc, report, err = hostagent(host, UNINSTALL)
    assert (rc, report["ok"]) == (0, True), (report, err)
    # --nodeps: Debian's rpm database knows no /bin/sh; the files are what is verified.
    verify = host.run("rpm -V --nodeps deepflow-agent")
    assert (verify.rc, verify.stdout) == (0, ""), verify
    assert service_state(host) == before
    wait_root_agent(host)

    # %preun on removal: stop and disable.
    host.run("rpm -e --nodeps deepflow-agent").check()
    assert agent_uids(host) == [] and host.run(f"test -e {AGENT}").rc != 0


def test_hostagent_rpm_upgrade(rpm_host, dist):
    """hostagent's own .rpm: the previous release's (built from its tag, tests/dist.py) installs the agent,
    `rpm -U` to this one's: status clean, the agent untouched, a restart runs it through the new launcher,
    the next install migrates the manifest changing at most the unit; uninstall + erase leave the host as
    before. This host's venv hostagent (/usr/local/bin) is not used: the package's /usr/sbin/hostagent is."""
    from tests.dist import previous_release, single_file_in, version
    from tests.fixtures.build import build_agent_double
    from tests.hostsnap import diff as snapshot_diff
    from tests.system.conftest import comparable
    from tests.system.hostcmd import DOUBLE, INSTALL
    from tests.system.test_nspawn_day2 import after_the_switch
    from tests.system.test_nspawn_e2e import check_double, wait_agent

    host = rpm_host
    rpm = "rpm --force-debian --nodeps"
    packaged = "/usr/sbin/hostagent"
    install, uninstall = (c.replace("hostagent ", packaged + " ", 1) for c in (INSTALL, UNINSTALL))
    host.put(DOUBLE, build_agent_double().read_bytes(), 0o755)
    host.put("/root/hostagent-old.rpm", sorted(previous_release().glob("hostagent-*.x86_64.rpm"))[0].read_bytes())
    host.put("/root/hostagent-new.rpm", (dist / f"hostagent-{version()}-1.x86_64.rpm").read_bytes())

    def snap() -> dict:  # without rpm's own database
        s = comparable(host.snapshot())
        return dict(s, files={p: e for p, e in s["files"].items()
                              if not p.startswith(("/var/lib/rpm/", "/usr/lib/sysimage/rpm/"))})

    def status() -> dict:
        rc, report, err = hostagent(host, f"{packaged} status --json")
        assert rc == 0 and report["ok"], (report, err)
        return report["data"]

    # What an RPM distribution's filesystem package owns, which this Debian-based rpm host lacks: the
    # package puts files there and must not own (and so remove) the dirs.
    host.run("mkdir -p /usr/share/man/man8 /usr/share/licenses").check()
    before = snap()
    host.run(f"{rpm} -i /root/hostagent-old.rpm").check()
    rc, report, err = hostagent(host, install)
    assert (rc, report["ok"]) == (0, True), (report, err)
    first = wait_agent(host)
    check_double(host, first)
    old_manifest = json.loads(host.get("/var/lib/hostagent/manifest.json"))

    # --replacepkgs: until the next release bumps it, this tree's version is the tag's.
    host.run(f"{rpm} -U --replacepkgs /root/hostagent-new.rpm").check()
    assert host.run("rpm -q hostagent").check().stdout.strip() == f"hostagent-{version()}-1.x86_64"
    new = hashlib.sha256(single_file_in(dist).read_bytes()).hexdigest()
    assert host.run(f"sha256sum {packaged}").check().stdout.split()[0] == new
    after_the_switch(host, first, old_manifest, status, install)
    verify = host.run("rpm -V --nodeps hostagent")
    assert (verify.rc, verify.stdout) == (0, ""), verify

    rc, report, err = hostagent(host, uninstall)
    assert (rc, report["ok"]) == (0, True), (report, err)
    host.run("rpm -e --nodeps hostagent").check()
    assert snapshot_diff(before, snap()) == []
