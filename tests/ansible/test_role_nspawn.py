"""The deepflow_agent role against a booted Debian 12 host (systemd-nspawn), over SSH on 127.0.0.1.

snapshot → --check on the fresh host (would change, nothing changes) → converge → testinfra host
suite (tests/system/test_host_state.py) → converge again
(changed=0) → --check (changed=0) → --check with another memory limit and controller (would change,
unit and config diffs shown, nothing changes) → converge into a second hostagent venv the role installs from the wheelhouse →
state=absent (removing that venv) → absent again (changed=0) → snapshot equal to the first.

The host image has hostagent in /opt/hostagent already (from the same wheelhouse): the role's
install phase must leave it alone there, and install it where it is missing.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible.runner import Host, Run, ansible_bin, run_playbook, write_inventory
from tests.hostsnap import diff as snapshot_diff
from tests.system.conftest import comparable

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
HOSTSNAP = REPO / "tests" / "hostsnap.py"
NAME = "h1"
SECOND_VENV = "/opt/hostagent-role"
UNIT = "/etc/systemd/system/deepflow-agent.service"
CONFIG = "/etc/deepflow-agent/deepflow-agent.yaml"
CONVERGE = "deepflow_agent : Converge the agent with hostagent"
UNINSTALL = "deepflow_agent : Remove the agent with hostagent"
INSTALL_PHASE = (
    "deepflow_agent : Ship the wheelhouse",
    "deepflow_agent : Create the hostagent venv",
    "deepflow_agent : Install hostagent into the venv",
)


def _requirements() -> str:
    from tests.images.nspawn import missing_requirement

    if missing_requirement():
        return missing_requirement()
    if ansible_bin("ansible-playbook") is None:
        return "ansible-core not installed (tests/ansible/requirements.txt)"
    return ""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    from tests.fixtures.build import build_agent_double
    from tests.images.nspawn import NspawnHost
    from tests.images.wheelhouse import build_wheelhouse

    tmp = tmp_path_factory.mktemp("ansible")
    # One wheelhouse: the image's /opt/hostagent comes from it, and the role ships it.
    wheels = build_wheelhouse(tmp / "wheelhouse")
    double = build_agent_double()
    with NspawnHost(ssh=True, wheelhouse=wheels) as host:
        host.put("/root/hostsnap.py", HOSTSNAP.read_bytes())
        assert host.ssh_port is not None
        inventory = write_inventory([Host(NAME, host.ssh_port, host.workdir / "id_ed25519")], tmp / "hosts.ini")
        base = {
            "deepflow_agent_controller_ips": ["127.0.0.1"],
            "deepflow_agent_binary_src": str(double),
            "deepflow_agent_hostagent_wheelhouse": str(wheels),
        }
        yield host, inventory, base


def play(inventory: Path, extra: dict, *args: str) -> Run:
    run = run_playbook(inventory, extra, *args)
    assert run.rc == 0 and NAME in run.stats, f"ansible-playbook {' '.join(args)} rc={run.rc}:\n{run.log}"
    print(f"ansible-playbook {' '.join(args) or '(apply)'}: {run.seconds:.1f}s, changed={run.changed(NAME)}")
    return run


def snapshot(host) -> dict:
    return comparable(json.loads(host.run("python3 /root/hostsnap.py").check().stdout))


def host_suite(host) -> None:
    """The shared testinfra suite (tests/system/test_host_state.py) on what the role installed."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/system/test_host_state.py", "-q", "-p", "no:cacheprovider",
         f"--hosts={host.testinfra_host}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"host suite failed:\n{proc.stdout}\njournal:\n{host.journal()}"


def sha256(host, path: str) -> str:
    return hashlib.sha256(host.get(path).encode()).hexdigest()


def test_converge_check_diff_absent(env):
    host, inventory, base = env
    before = snapshot(host)

    # Check mode on a fresh host: everything would change, nothing is written. The binary the
    # role would ship is not there yet, so hostagent is not asked for a plan.
    run = play(inventory, base, "--check", "--diff")
    assert run.changed_tasks(NAME) == [
        "deepflow_agent : Make the directory the agent binary is shipped into",
        "deepflow_agent : Ship the agent binary", CONVERGE]
    assert "is not on the host yet" in run.task(CONVERGE)["result"]["msg"]
    assert snapshot_diff(before, snapshot(host)) == []

    # Converge. /opt/hostagent already has this hostagent: the install phase does nothing.
    run = play(inventory, base)
    assert run.task(CONVERGE)["result"]["changed"] is True
    assert all(run.task(t)["status"] == "skipped" for t in INSTALL_PHASE), run.changed_tasks(NAME)
    host_suite(host)

    run = play(inventory, base)
    assert run.changed(NAME) == 0, run.changed_tasks(NAME)
    steps = run.task(CONVERGE)["result"]["steps"]
    assert steps and {s["status"] for s in steps} == {"unchanged"}, steps

    run = play(inventory, base, "--check", "--diff")
    assert run.changed(NAME) == 0, run.changed_tasks(NAME)
    assert run.task(CONVERGE)["result"]["report"]["dry_run"] is True

    # Another limit and a second controller in check mode: reported with the unit's and the
    # config's diffs, not applied.
    unit_before, config_before = sha256(host, UNIT), sha256(host, CONFIG)
    changed = dict(base, deepflow_agent_memory_mib=512, deepflow_agent_controller_ips=["127.0.0.1", "127.0.0.2"])
    run = play(inventory, changed, "--check", "--diff")
    assert run.changed_tasks(NAME) == [CONVERGE]
    assert f"+++ {UNIT}" in run.log and "+ExecStart=" in run.log and "--memory-mib 512" in run.log, run.log
    assert f"+++ {CONFIG}" in run.log and "127.0.0.2" in run.log, run.log
    assert (sha256(host, UNIT), sha256(host, CONFIG)) == (unit_before, config_before)

    # A venv without hostagent: the role ships the wheelhouse and installs it there, then
    # hostagent (now run from that venv) rewrites the unit's ExecStart.
    second = dict(base, deepflow_agent_hostagent_venv=SECOND_VENV)
    run = play(inventory, second)
    assert all(run.task(t)["result"].get("changed") for t in INSTALL_PHASE), run.changed_tasks(NAME)
    assert run.task(CONVERGE)["result"]["changed"] is True
    assert f"ExecStart={SECOND_VENV}/bin/python3" in host.get(UNIT)
    host.run("systemctl is-active --quiet deepflow-agent").check()
    run = play(inventory, second)
    assert run.changed(NAME) == 0, run.changed_tasks(NAME)

    # Take it all back, the second venv too.
    run = play(inventory, dict(second, deepflow_agent_state="absent", deepflow_agent_hostagent_remove=True))
    removed = run.task(UNINSTALL)["result"]
    assert removed["changed"] is True and removed["report"]["command"] == "uninstall", removed
    assert host.run(f"test -e {SECOND_VENV}").rc == 1
    assert host.run("test -e /var/lib/hostagent-ansible").rc == 1

    run = play(inventory, dict(base, deepflow_agent_state="absent"))
    assert run.changed(NAME) == 0, run.changed_tasks(NAME)
    assert snapshot_diff(before, snapshot(host)) == []
