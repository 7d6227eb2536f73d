"""hostagent on real systemd hosts: Debian VMs under qemu (TCG), one per cgroup tier.

Tiers: bookworm-v2 (Debian 12, pure cgroup v2), bullseye-v1 (Debian 11 booted
with systemd.unified_cgroup_hierarchy=0, pure cgroup v1), trixie-v2 (Debian 13,
v2 only; opt-in with HOSTAGENT_VM_TRIXIE=1 because CI's time budget holds two
VM tiers, see bench/vm_boot.py for the figures). HOSTAGENT_VM_TIERS=a,b picks
tiers explicitly.

One VM per tier serves the module's tests in order:
  test_boot: SSH works, systemd is up (no failed unit), the cgroup mode is
    the tier's, python3 is the suite's.
  test_lifecycle: the single file (dist/hostagent-<v>-linux-x86_64, built once
    per session, tests/dist.py) goes on the VM as /usr/sbin/hostagent, as the
    .deb puts it, then install -> suite -> reboot -> suite -> self-upgrade-style
    binary replacement + restart -> caps back -> uninstall -> snapshot equal.
    The file never uses the VM's Python (the images keep python3 for hostsnap).
  test_venv_on_the_tiers_python (after the lifecycle): the pip route on the
    tier's own Python (bullseye 3.9, trixie 3.13): a venv from the per-Python
    wheelhouse, --version and a dry-run install; bookworm's 3.11 is skipped
    (the nspawn tier's venv lifecycle covers it).
  test_deepflow_deb_upgrade_and_reboot (bookworm-v2 only, last): DeepFlow's .deb stand-in's root
    agent taken over by the single file, `dpkg -i` of the next release, restart, reboot, uninstall,
    `dpkg --verify`, `dpkg -r`; one reboot, no boot of its own (~95 s).

The venv route's whole lifecycle is the nspawn tier's (test_nspawn_e2e.py,
Python 3.11). The per-Python wheelhouses for bullseye (3.9) and trixie (3.13)
come from vm_image.target_wheels, as in packaging/build.sh.

Run: sudo .venv/bin/python -m pytest -m vm tests/system/test_vm_e2e.py -s
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import hostsnap
from tests.images.vm import VMHost, cgroup_mode
from tests.images.vm_image import TIERS, Tier, build_image

pytestmark = [pytest.mark.vm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
AGENT = "/usr/sbin/deepflow-agent"
# Where the default (--remote-upgrade auto) runs an agent whose binary no package owns.
RUNNING = "/var/lib/deepflow-agent/deepflow-agent"
HOSTAGENT = "/usr/sbin/hostagent"
UNIT = "deepflow-agent"
DOUBLE_STATUS = "/var/log/deepflow-agent/agent-double.json"
PACKAGE_UNIT_PATH = "/etc/systemd/system/deepflow-agent.service"
DROPIN_DIR = PACKAGE_UNIT_PATH + ".d"
DROPIN = DROPIN_DIR + "/hostagent.conf"
# DeepFlow's .deb Day 2 (test_deepflow_deb_upgrade_and_reboot) runs on this tier only.
PACKAGE_TIER = "bookworm-v2"
# The testinfra suite (tests/system/), pointed at the VM over ssh.
SUITE = REPO / "tests" / "system" / "test_host_state.py"

# CI runs the v2 and v1 tiers; trixie adds ~10 min, so it is opt-in.
TIER_NAMES = [t for t in os.environ.get("HOSTAGENT_VM_TIERS", "bookworm-v2,bullseye-v1").split(",") if t]
if os.environ.get("HOSTAGENT_VM_TRIXIE") == "1" and "trixie-v2" not in TIER_NAMES:
    TIER_NAMES.append("trixie-v2")


def _missing_prerequisite() -> str:
    if os.geteuid() != 0:
        return "needs root (mmdebstrap --mode=root)"
    for tool in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (see .ci/apt-packages.txt)"
    return ""


@pytest.fixture(scope="module", params=TIER_NAMES)
def tier(request) -> Tier:
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    return TIERS[request.param]


@pytest.fixture(scope="module")
def vm(tier: Tier, tmp_path_factory):
    started = time.monotonic()
    image = build_image(tier)
    built = time.monotonic() - started
    with VMHost(image, tmp_path_factory.mktemp(f"vm-{tier.name}")) as host:
        print(f"\n[{tier.name}] image ready in {built:.0f} s, boot-to-ssh {host.boot_seconds[0]:.0f} s")
        host.put(REPO / "tests" / "hostsnap.py", "/root/hostsnap.py")
        yield host


def snapshot(vm: VMHost) -> dict:
    # -B: writing .pyc files under /usr would show up in the snapshot itself.
    snap = json.loads(vm.run("python3 -B /root/hostsnap.py").stdout)
    # systemd re-creates its unit cgroups each boot with new xattrs
    # (trusted.invocation_id and the like); hostagent sets none there.
    for path, entry in snap["files"].items():
        if path.startswith("/sys/fs/cgroup/"):
            entry.pop("xattrs", None)
    return snap


def test_boot(vm: VMHost, tier: Tier):
    state = vm.wait_until_running()
    failed = vm.run("systemctl --failed --no-legend --plain", check=False).stdout
    assert state == "running", f"systemd is {state!r}; failed units:\n{failed}"

    mode = cgroup_mode(vm)
    assert mode == tier.cgroup, f"{tier.name} booted with cgroup {mode}"
    if tier.cgroup == "v1":
        for controller in ("cpu", "memory"):
            fstype = vm.run(f"stat -f -c %T /sys/fs/cgroup/{controller}/").stdout.strip()
            assert fstype == "cgroupfs", f"/sys/fs/cgroup/{controller} is {fstype}"
    else:
        controllers = vm.run("cat /sys/fs/cgroup/cgroup.controllers").stdout.split()
        assert {"cpu", "memory"} <= set(controllers), controllers

    python = vm.run("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'").stdout.strip()
    assert python == tier.python


# ------------------------------------------------------------------ lifecycle

def _hostagent(vm: VMHost, *args: str, expect_rc: int = 0) -> dict:
    """Run the CLI with --json; on an unexpected exit, fail with everything needed to debug it."""
    cmd = f"{HOSTAGENT} " + " ".join(args) + " --json"
    result = vm.run(cmd, check=False, timeout=600)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = None
    if result.returncode != expect_rc or report is None:
        journal = vm.run(f"journalctl --no-pager -n 150 -u {UNIT}", check=False).stdout
        pytest.fail(f"{cmd} exited {result.returncode} (expected {expect_rc})\nstdout:\n{result.stdout}\n"
                    f"stderr:\n{result.stderr[-4000:]}\njournal of {UNIT}:\n{journal}")
    for key in ("command", "ok", "changed", "dry_run", "steps", "error"):
        assert key in report, f"--json output lacks {key!r}: {report}"
    for step in report["steps"]:
        assert {"id", "title", "status", "diff"} <= set(step), step
    return report


def _suite(vm: VMHost, *options: str) -> None:
    """The testinfra suite (tests/system/test_host_state.py) over ssh, as for any host."""
    cmd = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider",
           *vm.testinfra_args, *options]
    result = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=900)
    if result.returncode != 0:
        journal = vm.run(f"journalctl --no-pager -b -n 100 -u {UNIT}", check=False).stdout
        pytest.fail(f"host suite {options} failed:\n{result.stdout[-6000:]}\njournal:\n{journal}")


def _wait_agent(vm: VMHost, timeout: float = 120.0) -> str:
    """The agent's main PID once the unit is active and the process exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = vm.run(f"systemctl is-active {UNIT}", check=False).stdout.strip()
        pid = _agent_pids(vm)
        if state == "active" and pid not in ("", "0") and vm.run(f"test -d /proc/{pid}", check=False).returncode == 0:
            return pid
        time.sleep(1)
    journal = vm.run(f"journalctl --no-pager -b -n 100 -u {UNIT}", check=False).stdout
    pytest.fail(f"{UNIT} not running after {timeout:.0f} s (state {state!r})\njournal:\n{journal}")


def _caps(vm: VMHost) -> str:
    return vm.run(f"getcap {RUNNING}").stdout.strip()


def _agent_pids(vm: VMHost) -> str:
    return vm.run(f"systemctl show -p MainPID --value {UNIT}").stdout.strip()


def test_lifecycle(vm: VMHost, tier: Tier, tmp_path: Path, single_file: Path):
    from tests.fixtures.build import build_agent_double

    timings: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name] = round(now - mark, 1)
        mark = now

    double = build_agent_double()
    lap("build double")
    vm.put(double, "/root/deepflow-agent")
    before = snapshot(vm)
    vm.put(single_file, f"{HOSTAGENT}.new")
    vm.run(f"chown root:root {HOSTAGENT}.new && chmod 0755 {HOSTAGENT}.new && mv -f {HOSTAGENT}.new {HOSTAGENT}")
    version = vm.run(f"{HOSTAGENT} --version").stdout
    assert version.startswith("hostagent "), version
    lap("put hostagent")
    report = _hostagent(vm, "install", "--agent-binary", "/root/deepflow-agent",
                        "--controller-ip", "127.0.0.1", "--yes")
    assert report["ok"] is True and report["changed"] is True, report
    unit = vm.run("cat /etc/systemd/system/deepflow-agent.service").stdout
    assert f"ExecStart={HOSTAGENT} exec --prepared " in unit, unit
    _wait_agent(vm)
    again = _hostagent(vm, "install", "--agent-binary", "/root/deepflow-agent", "--controller-ip", "127.0.0.1", "--yes")
    assert again["changed"] is False and {s["status"] for s in again["steps"]} == {"unchanged"}, again
    lap("install")
    _suite(vm, "--state=installed")
    lap("suite")

    vm.reboot()
    vm.wait_until_running()
    _wait_agent(vm)
    lap("reboot")
    _suite(vm, "--state=installed")
    lap("suite after reboot")

    # A self-upgrade writes a new file and renames it over the old one: no file caps.
    # (As the agent's user writes it, in the dir only its group may write: the launcher takes it over.)
    vm.run(f"install -o deepflow -g deepflow -m 0755 /root/deepflow-agent {RUNNING}.new && mv -f {RUNNING}.new {RUNNING}")
    assert _caps(vm) == "", "a freshly written file should carry no caps"
    old_pid = _agent_pids(vm)
    vm.run(f"systemctl restart {UNIT}")
    new_pid = _wait_agent(vm)
    assert new_pid != old_pid
    assert _caps(vm), "restart did not put the file caps back"
    _suite(vm, "--state=installed")
    lap("upgrade+restart+suite")

    report = _hostagent(vm, "uninstall", "--yes")
    assert report["ok"] is True, report
    # The file itself goes as it came (the .deb's postrm removes its cache too).
    vm.run(f"rm -f {HOSTAGENT} && rm -rf /var/cache/hostagent")
    snap_file = tmp_path / "before.json"
    snap_file.write_text(json.dumps(before))
    _suite(vm, "--state=absent", f"--snapshot-before={snap_file}")
    after = snapshot(vm)
    assert hostsnap.diff(before, after) == []
    lap("uninstall+suite")
    print(f"[{tier.name}] lifecycle timings (s): {timings}")


def test_venv_on_the_tiers_python(vm: VMHost, tier: Tier, tmp_path: Path):
    """The pip route on this tier's own Python (bullseye 3.9, trixie 3.13; the nspawn tier covers
    3.11): a venv from the per-Python wheelhouse, `--version` and a dry-run install that plans every
    step and changes nothing. The lifecycle itself runs from the single file (test_lifecycle)."""
    from tests.fixtures.build import build_agent_double
    from tests.images.vm_image import target_wheels
    from tests.images.wheelhouse import build_wheelhouse

    wheelhouse = build_wheelhouse(tmp_path / "wheelhouse")
    extra = target_wheels(tier, wheelhouse)
    if extra is None:
        pytest.skip(f"{tier.name} has this machine's Python; the nspawn tier covers the venv there")
    vm.run("rm -rf /root/wheelhouse /opt/hostagent")
    vm.put(build_agent_double(), "/root/deepflow-agent")
    vm.put(extra, "/root/wheelhouse")
    vm.put(next(wheelhouse.glob("hostagent-*.whl")), "/root/wheelhouse/")
    before = snapshot(vm)
    vm.run("python3 -m venv /opt/hostagent && /opt/hostagent/bin/pip install -q --no-index"
           " --find-links /root/wheelhouse hostagent", timeout=900)
    try:
        version = vm.run("/opt/hostagent/bin/hostagent --version").stdout
        assert version.startswith("hostagent "), version
        result = vm.run("/opt/hostagent/bin/hostagent install --agent-binary /root/deepflow-agent"
                        " --controller-ip 127.0.0.1 --dry-run --json", check=False, timeout=300)
        report = json.loads(result.stdout)
        assert (result.returncode, report["ok"], report["dry_run"]) == (0, True, True), (report, result.stderr)
        assert report["steps"] and {s["status"] for s in report["steps"]} == {"planned"}, report["steps"]
    finally:
        vm.run("rm -rf /opt/hostagent /root/wheelhouse")
    assert hostsnap.diff(before, snapshot(vm)) == []


# ------------------------------------------------------ DeepFlow's .deb, Day 2

def _double_status(vm: VMHost, timeout: float = 120.0) -> dict:
    """The double's status once the unit's current main process has done its start-up work."""
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        pid = _agent_pids(vm)
        try:
            status = json.loads(vm.run(f"cat {DOUBLE_STATUS}", check=False).stdout)
        except ValueError:
            status = {}
        if status.get("state") == "running" and str(status.get("pid")) == pid:
            return status
        time.sleep(1)
    journal = vm.run(f"journalctl --no-pager -b -n 100 -u {UNIT}", check=False).stdout
    pytest.fail(f"agent not running after {timeout:.0f} s; status={status}\njournal:\n{journal}")


def _check_hostagents_agent(vm: VMHost) -> None:
    """The agent as hostagent runs it: the user, exactly the profile's caps, hostagent's config."""
    from tests.system.test_nspawn_e2e import PROFILE_MASK

    status = _double_status(vm)
    uid = int(vm.run("id -u deepflow").stdout)
    assert (status["uid"], status["euid"]) == (uid, uid), status
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[field], 16) == PROFILE_MASK, (field, status[field])
    assert status["config_file"] == "/etc/deepflow-agent/deepflow-agent.yaml", status
    assert status["cgroup_outcome"] == "limited", status


def _wait_root_agent(vm: VMHost, timeout: float = 120.0) -> None:
    """The package's own service: the agent as root, on DeepFlow's default config (no -f)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ps = vm.run("ps -o uid=,args= -C deepflow-agent", check=False).stdout.split()
        if ps == ["0", AGENT]:
            return
        time.sleep(1)
    pytest.fail(f"no root agent: ps {ps}")


def _service_state(vm: VMHost) -> tuple[str, str]:
    return tuple(vm.run(f"systemctl {verb} {UNIT}", check=False).stdout.strip()
                 for verb in ("is-enabled", "is-active"))


def test_deepflow_deb_upgrade_and_reboot(vm: VMHost, tier: Tier, tmp_path: Path, single_file: Path):
    """DeepFlow's .deb (stand-in from its packaging files, tests/fixtures/deepflow_packages.py) on a real
    kernel: v1.0's root agent → taken over by the single file → `dpkg -i` v1.1 + restart → reboot →
    still the user, the profile's caps, hostagent's config → uninstall → the package's files verify
    clean and its root agent runs again → `dpkg -r`. The nspawn tier (test_nspawn_packages.py) covers
    status/doctor and the .rpm; this is the one VM tier's real reboot. Runs after test_lifecycle on the
    same VM (no boot of its own), which left the host at its snapshot."""
    from tests.fixtures.deepflow_packages import UNIT as PACKAGE_UNIT
    from tests.fixtures.deepflow_packages import VERSIONS, build_deb

    if tier.name != PACKAGE_TIER:
        pytest.skip(f"DeepFlow's package upgrade runs on one VM tier ({PACKAGE_TIER})")
    started = time.monotonic()
    for i, version in enumerate(VERSIONS):
        vm.put(build_deb(version), f"/root/deepflow-agent-{i}.deb")
    before = snapshot(vm)
    vm.put(single_file, HOSTAGENT)
    vm.run(f"chown root:root {HOSTAGENT} && chmod 0755 {HOSTAGENT}")

    vm.run(f"dpkg -i /root/deepflow-agent-0.deb && systemctl enable --now {UNIT}")
    _wait_root_agent(vm)
    package_state = _service_state(vm)
    assert package_state == ("enabled", "active")

    report = _hostagent(vm, "install", "--agent-binary", AGENT, "--controller-ip", "127.0.0.1", "--yes")
    ids = [s["id"] for s in report["steps"]]
    assert f"unit-drop-in:{DROPIN}" in ids and not any(i.startswith("service-definition:") for i in ids), ids
    assert vm.run(f"cat {PACKAGE_UNIT_PATH}").stdout == PACKAGE_UNIT  # the package's unit, untouched
    _check_hostagents_agent(vm)

    # The next release: prerm stops the agent, dpkg replaces every file (the binary without caps,
    # the unit), postinst only daemon-reloads; the user's usual restart follows.
    vm.run("dpkg -i /root/deepflow-agent-1.deb")
    assert vm.run(f"tail -c 20 {AGENT}").stdout.strip().endswith(VERSIONS[1])
    vm.run(f"systemctl restart {UNIT}")
    _check_hostagents_agent(vm)

    vm.reboot()
    vm.wait_until_running()
    assert cgroup_mode(vm) == tier.cgroup
    _check_hostagents_agent(vm)
    status = _hostagent(vm, "status", expect_rc=0)
    assert not status["data"]["drift"], status["data"]
    assert any("DeepFlow's package (deepflow-agent) replaced" in n for n in status["data"]["notes"]), status["data"]

    report = _hostagent(vm, "uninstall", "--yes")
    assert report["ok"] is True, report
    assert vm.run(f"dpkg --verify {UNIT}", check=False).stdout == ""
    assert vm.run(f"stat -c %U:%G:%a {AGENT}; getcap {AGENT}").stdout.split() == ["root:root:755"]
    assert vm.run(f"test -e {DROPIN_DIR}", check=False).returncode != 0
    assert _service_state(vm) == package_state
    _wait_root_agent(vm)

    vm.run(f"dpkg -r {UNIT}")
    assert vm.run(f"test -e {AGENT} || test -e {PACKAGE_UNIT_PATH}", check=False).returncode != 0
    assert vm.run("pgrep -x deepflow-agent", check=False).stdout == ""
    # What the package itself leaves behind (its enablement; its root agent's logs and, on v2, the
    # cgroup it makes at /sys/fs/cgroup/deepflow-agent), then the single file and its cache as in
    # test_lifecycle: hostagent leaves nothing of its own.
    vm.run(f"rm -f /etc/systemd/system/multi-user.target.wants/{UNIT}.service /root/deepflow-agent-*.deb"
           f" {HOSTAGENT} && rm -rf /var/log/deepflow-agent /var/cache/hostagent && systemctl daemon-reload"
           " && if [ -d /sys/fs/cgroup/deepflow-agent ]; then rmdir /sys/fs/cgroup/deepflow-agent; fi")
    assert hostsnap.diff(before, snapshot(vm)) == []
    print(f"[{tier.name}] DeepFlow .deb Day 2: {time.monotonic() - started:.0f} s, "
          f"reboot-to-ssh {vm.boot_seconds[-1]:.0f} s")
