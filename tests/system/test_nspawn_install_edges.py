"""Install edge cases on a booted Debian 12 (systemd-nspawn): dry run, refusals, a start failure rolled
back, the watcher Domain lookup, drift reported by status and repaired by a re-run, a changed input.

Each case ends with the host snapshot equal to the one taken before it.
"""
from __future__ import annotations

import json

import pytest
import yaml

from tests.hostsnap import diff as snapshot_diff
from tests.system.hostcmd import DOUBLE, INSTALL, UNINSTALL, snapshot

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]


@pytest.fixture(scope="module")
def host():
    from tests.images.nspawn import nspawn_host

    with nspawn_host() as h:
        h.run("cp /bin/false /root/exits-at-once && mkdir -p /root/bad && printf '#!/bin/sh\\n' > /root/bad/agent.sh").check()
        yield h


def hostagent(host, args: str) -> tuple[int, dict, str]:
    rc, out, err = host.run(args, timeout=240)
    try:
        return rc, json.loads(out), err
    except ValueError:
        pytest.fail(f"{args}: rc={rc} stdout={out!r} stderr={err!r}")


@pytest.fixture
def unchanged(host):
    """Asserts the host snapshot is back to the one before the test."""
    before = snapshot(host)
    yield
    host.run(UNINSTALL)
    problems = snapshot_diff(before, snapshot(host))
    assert problems == [], "\n".join(problems[:30])


def test_dry_run_shows_diffs_and_changes_nothing(host, unchanged) -> None:
    before = snapshot(host)
    rc, report, _ = hostagent(host, INSTALL + " --dry-run")
    assert rc == 0 and report["dry_run"] and report["changed"]
    assert {s["status"] for s in report["steps"]} == {"planned"}
    config = next(s for s in report["steps"] if s["id"] == "file:/etc/deepflow-agent/deepflow-agent.yaml")
    assert "+controller-ips:" in config["diff"] and "+- 127.0.0.1" in config["diff"]
    assert snapshot_diff(before, snapshot(host)) == []


@pytest.mark.parametrize("args, message", [
    ("--controller-ip 127.0.0.1 --agent-binary /root/bad/agent.sh", "not an ELF executable"),
    ("--controller-ip 127.0.0.1 --agent-binary /root/missing", "does not exist"),
    (f"--controller-ip 10.0.0.1 --controller-ip fd00::1 --agent-binary {DOUBLE}", "mix IPv4 and IPv6"),
    (f"--controller-ip 127.0.0.1 --agent-binary {DOUBLE} --caps cap_net_raw,cap_sys_bogus", "unknown capability"),
])
def test_refusals_change_nothing(host, unchanged, args, message) -> None:
    rc, report, err = hostagent(host, "hostagent install --yes --json " + args)
    assert rc == 2 and not report["ok"] and message in report["error"], (report, err)
    assert not report["steps"]


def test_a_start_failure_is_rolled_back_with_the_journal(host, unchanged) -> None:
    rc, report, err = hostagent(host, INSTALL.replace(DOUBLE, "/root/exits-at-once"))
    assert rc == 1 and not report["ok"]
    assert "deepflow-agent did not come up running as deepflow" in report["error"]
    assert "--- journal ---" in report["error"]
    statuses = [s["status"] for s in report["steps"]]
    assert statuses[-1] == "rolled-back" and "failed" in statuses
    assert host.run("test -e /var/lib/hostagent").rc != 0
    assert host.run("systemctl is-enabled deepflow-agent").stdout.strip() in ("", "not-found")


def test_watcher_domain_lookup_waits_for_the_domain(host, unchanged) -> None:
    from tests.fixtures.fake_server import FakeDeepflowServer

    with FakeDeepflowServer() as server:  # on this machine's loopback, which the container shares
        server.add_domain("prod-k8s", "d-Prod12345X", appear_after=2.0)
        rc, report, err = hostagent(host, INSTALL + f" --watcher-domain prod-k8s --server 127.0.0.1:{server.port}")
        assert rc == 0, (report, err)
    config = yaml.safe_load(host.run("cat /etc/deepflow-agent/deepflow-agent.yaml").check().stdout)
    assert config["kubernetes-cluster-id"] == "d-Prod12345X"

    with FakeDeepflowServer() as server:
        server.set_failure("fail")
        rc, report, err = hostagent(host, INSTALL + f" --watcher-domain other --server 127.0.0.1:{server.port}")
        assert rc == 2 and "deepflow-server refused" in report["error"]


def test_status_reports_drift_and_a_rerun_repairs_it(host, unchanged) -> None:
    rc, report, _ = hostagent(host, INSTALL)
    assert rc == 0
    rc, status, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and status["data"]["installed"] and status["data"]["drift"] == []
    host.run("chmod 0644 /etc/deepflow-agent/deepflow-agent.yaml && setcap -r /var/lib/deepflow-agent/deepflow-agent").check()
    rc, status, _ = hostagent(host, "hostagent status --json")
    assert rc == 1 and any("deepflow-agent.yaml differs" in d for d in status["data"]["drift"])
    assert any("file capabilities on /var/lib/deepflow-agent/deepflow-agent are none" in d for d in status["data"]["drift"])
    rc, report, _ = hostagent(host, INSTALL)
    fixed = {s["id"] for s in report["steps"] if s["status"] == "applied"}
    assert {"file:/etc/deepflow-agent/deepflow-agent.yaml", "caps:/var/lib/deepflow-agent/deepflow-agent",
            "service:deepflow-agent"} == fixed
    rc, status, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and status["data"]["drift"] == []
    rc, doctor, _ = hostagent(host, "hostagent doctor --json --timeout 0.5")
    assert [p["user"] for p in doctor["data"]["processes"]] == ["deepflow"]
    assert doctor["data"]["processes"][0]["CapBnd"] == ["cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_sys_ptrace", "cap_sys_admin"]


def test_changed_limits_change_only_what_differs(host, unchanged) -> None:
    assert hostagent(host, INSTALL)[0] == 0
    rc, report, _ = hostagent(host, INSTALL + " --memory-mib 512 --caps cbpf-minimal")
    applied = [s["id"] for s in report["steps"] if s["status"] == "applied"]
    # The cgroup dirs exist, so their limits are the agent's (from its group config): install leaves
    # them alone; the new initial limits reach the launcher through the unit.
    assert applied == ["caps:/var/lib/deepflow-agent/deepflow-agent", "service-definition:/etc/systemd/system/deepflow-agent.service",
                       "service:deepflow-agent"]
    rc, status, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and status["data"]["drift"] == []
    pid = host.run("systemctl show -p MainPID --value deepflow-agent").check().stdout.strip()
    capbnd = host.run(f"grep CapBnd /proc/{pid}/status").check().stdout.split()[1]
    assert int(capbnd, 16) == 0x87000  # net_admin, net_raw, ipc_lock, sys_ptrace


def test_doctor_here_does_not_claim_the_containers_agent(host, unchanged) -> None:
    import subprocess
    import sys

    rc, _report, _ = hostagent(host, INSTALL)
    assert rc == 0
    here = subprocess.run([sys.executable, "-m", "hostagent", "doctor", "--json", "--timeout", "0.1"],
                          capture_output=True, text=True, cwd="/")
    assert json.loads(here.stdout)["data"]["processes"] == [], here.stdout


def test_the_service_survives_a_removed_log_dir(host, unchanged) -> None:
    rc, _report, _ = hostagent(host, INSTALL)
    assert rc == 0
    host.run("rm -r /var/log/deepflow-agent && systemctl restart deepflow-agent").check()
    host.run("for i in $(seq 50); do systemctl is-active --quiet deepflow-agent && break; sleep 0.1; done; "
             "systemctl is-active deepflow-agent").check()
    assert host.run("stat -c %U:%a /var/log/deepflow-agent").check().stdout.strip() == "deepflow:750"


def test_the_agent_owns_its_limits_and_status_agrees(host, unchanged) -> None:
    """The double, like the real agent, writes its group's global.limits (stand-in file) and re-applies
    them on change; status sees no drift and a restart (the launcher) leaves them alone."""
    assert hostagent(host, INSTALL)[0] == 0
    try:
        host.run("mkdir -p /run/deepflow-agent-double && "
                 "printf 'max_millicpus: 300\\nmax_memory: 200\\n' > /run/deepflow-agent-double/group-limits").check()
        rc, out, _ = host.run("for i in $(seq 50); do d=/sys/fs/cgroup/cpu/deepflow-agent/cpu.cfs_quota_us; "
                              "[ -e $d ] || d=/sys/fs/cgroup/deepflow-agent/cpu.max; "
                              "grep -q '^30000' $d && exit 0; sleep 0.1; done; cat $d; exit 1")
        assert rc == 0, out
        rc, status, _ = hostagent(host, "hostagent status --json")
        assert rc == 0 and status["data"]["drift"] == []
        host.run("systemctl restart deepflow-agent").check()
        rc, doctor, _ = hostagent(host, "hostagent doctor --json --timeout 0.5")
        assert doctor["data"]["limits"]["in_force"] == {"max_millicpus": 300, "max_memory": 200}
        assert doctor["data"]["limits"]["install"] == {"max_millicpus": 1000, "max_memory": 768}
    finally:
        host.run("rm -rf /run/deepflow-agent-double")


def test_a_known_agent_is_moved_into_its_group(host, unchanged) -> None:
    """install --agent-group NAME --server on a host whose agent the server lists in another group."""
    from hostagent.facts.host import host_identity
    from tests.fixtures.fake_group_server import FakeGroupServer

    me = json.loads(host.run("python3 -c 'import json, socket; print(json.dumps(socket.gethostname()))'").check().stdout)
    ips, macs = sorted(host_identity().ips), sorted(host_identity().macs)  # the container shares this network
    if not ips or not macs:
        pytest.skip("no non-loopback address to register an agent with")
    with FakeGroupServer(version="7.1.0") as srv:
        edge = srv.add_group("edge")
        agent = srv.add_vtap(me, ips[0], macs[0])  # only an IP+MAC match is this host's
        args = INSTALL + f" --server 127.0.0.1:{srv.port} --agent-group edge"
        rc, plan, err = hostagent(host, args + " --dry-run")
        assert rc == 0, (plan, err)
        step = next(s for s in plan["steps"] if s["id"].startswith("agent-group:"))
        assert step["status"] == "planned" and "move agent" in step["diff"] and "to " + edge["SHORT_UUID"] in step["diff"]
        assert [r for r in srv.requests if r.method != "GET"] == []
        rc, report, err = hostagent(host, args)
        assert rc == 0, (report, err)
        assert srv.vtaps[agent["LCUUID"]]["VTAP_GROUP_LCUUID"] == edge["LCUUID"]
        rc, again, _ = hostagent(host, args)
        assert rc == 0 and not again["changed"]
        rc, out, _ = host.run("hostagent uninstall --yes --json --deregister")
        assert rc == 0 and any("deleted agent" in n for n in json.loads(out)["notes"])
        assert srv.vtaps == {}
