"""DeepFlow's .rpm layout on a Debian 12 host under systemd-nspawn, installed with Debian's rpm
(`--force-debian --nodeps`): the unit in /lib/systemd/system, %post daemon-reload + try-restart, %preun
stop + disable on removal. The .deb and what both share: test_nspawn_packages.py."""
from __future__ import annotations

import dataclasses

import pytest

from tests.system.hostcmd import UNINSTALL
from tests.system.test_nspawn_e2e import hostagent
from tests.system.test_nspawn_packages import (
    AGENT,
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
