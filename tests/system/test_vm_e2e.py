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
HOSTAGENT = "/usr/sbin/hostagent"
UNIT = "deepflow-agent"
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
    return vm.run(f"getcap {AGENT}").stdout.strip()


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
    vm.run(f"cp /root/deepflow-agent {AGENT}.new && chmod 755 {AGENT}.new && mv -f {AGENT}.new {AGENT}")
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
