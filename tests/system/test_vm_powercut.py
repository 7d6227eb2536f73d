"""Power cuts: the whole VM killed at a point of install or uninstall, unflushed writes lost; then a
boot and `hostagent uninstall` (at most twice) leave the host as before, and a fresh install works.

One bookworm VM (the test_vm_e2e image) is booted once and prepared: the single file as
/usr/sbin/hostagent, the agent double, a snapshot of the host (`before`). Its guest then keeps dirty
pages in RAM (no periodic writeback, ext4 commit every hour), so only what something flushed (an
fsync, or a journal commit that someone's fsync forced) survives the cut. Two states are saved in
the overlay with qemu's savevm: `ready` (nothing installed) and `installed`. Each point then costs one
resume and one cold boot, not a fresh VM:

    resume `ready` (or `installed`) -> hostagent install (or uninstall) with
    HOSTAGENT_FAULT_AT=<point> HOSTAGENT_FAULT_ACTION=stop: the run freezes at the point and says so
    -> SIGKILL qemu (the power cut) -> cold boot of the disk as it was left -> uninstall, a second
    time if the first fails -> host equal to `before` -> install, the agent runs.

Why killing qemu is a power cut, and cache=unsafe is right for it: the guest's page cache lives in
its RAM and dies with qemu. Every guest flush still reaches the host (qemu writes its own qcow2
caches out to the host even with cache=unsafe; only the host fsync is skipped), and the host
outlives qemu, so what the guest flushed is on the disk as on a real disk that honours FLUSH.
cache=writeback or none would differ only if the host itself crashed. Writes the guest had submitted
to its disk but not flushed may survive (a disk whose cache drained before the cut); a disk that
loses them is not modelled.

Points (the ids are the engine's and steps' fault points, hostagent/faults.py): CI runs
CI_POINTS; HOSTAGENT_VM_POWERCUT=all runs every point in POINTS (figures in the README), or
HOSTAGENT_VM_POWERCUT=POINT,POINT those.

Run: sudo .venv/bin/python -m pytest -m vm tests/system/test_vm_powercut.py -s
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from hostagent.faults import REACHED
from tests import hostsnap
from tests.images.vm import VMHost
from tests.images.vm_image import TIERS, build_image
from tests.system.test_vm_e2e import HOSTAGENT, RUNNING, _missing_prerequisite, snapshot

pytestmark = [pytest.mark.vm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
USER = "deepflow"
UNIT_ID = "service:deepflow-agent"
INSTALL = f"{HOSTAGENT} install --agent-binary /root/deepflow-agent --controller-ip 127.0.0.1 --yes --json"
UNINSTALL = f"{HOSTAGENT} uninstall --yes --json"

# (command, point, what is on the way to the disk when the power goes)
POINTS = (
    ("install", f"applied:user:{USER}", "useradd has run; its step is still 'applying'"),
    ("install", f"inside:copy:{RUNNING}", "the binary written to its temp file, not flushed nor renamed"),
    ("install", f"applied:caps:{RUNNING}", "file capabilities set, not yet recorded"),
    ("install", "after:service-definition:/etc/systemd/system/deepflow-agent.service", "the unit written, daemon-reloaded, recorded"),
    ("install", f"inside:{UNIT_ID}", "systemctl enable has run (its symlink unflushed), no start yet"),
    ("install", f"applied:{UNIT_ID}", "the agent runs (enabled, started), not yet recorded"),
    ("uninstall", f"revert-after:{UNIT_ID}", "the agent stopped and disabled, recorded"),
    ("uninstall", f"revert-before:binary:{RUNNING}", "mid-way: the binary about to go"),
    ("uninstall", f"revert-after:user:{USER}", "userdel has run, recorded; the group is left"),
)
# A spread that fits CI's time budget: the user, the binary copy, the service start, one uninstall.
CI_POINTS = (f"applied:user:{USER}", f"inside:copy:{RUNNING}", f"inside:{UNIT_ID}", f"revert-after:user:{USER}")
_CHOICE = os.environ.get("HOSTAGENT_VM_POWERCUT", "")
SELECTED = [p for p in POINTS if _CHOICE == "all" or p[1] in (_CHOICE.split(",") if _CHOICE else CI_POINTS)]

# The guest holds what nobody flushed: no periodic writeback, and ext4 commits its journal only
# when an fsync (or an hour) asks. A run then survives a cut only through its own flushes.
LAZY_GUEST = ("sysctl -q vm.dirty_writeback_centisecs=0 vm.dirty_expire_centisecs=360000"
              " && mount -o remount,commit=3600 /")

TALLY: dict = {"tried": 0, "recovered": 0, "second_uninstall": 0, "seconds": {}}


class Prepared:
    def __init__(self, vm: VMHost, before: dict, trace: list[str], prep_seconds: float) -> None:
        self.vm, self.before, self.trace, self.prep_seconds = vm, before, trace, prep_seconds


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, single_file: Path):
    reason = _missing_prerequisite()
    if reason:
        pytest.skip(reason)
    from tests.fixtures.build import build_agent_double

    started = time.monotonic()
    image = build_image(TIERS["bookworm-v2"])
    with VMHost(image, tmp_path_factory.mktemp("vm-powercut")) as vm:
        state = vm.wait_until_running()
        assert state == "running", state
        vm.put(REPO / "tests" / "hostsnap.py", "/root/hostsnap.py")
        vm.put(build_agent_double(), "/root/deepflow-agent")
        vm.put(single_file, f"{HOSTAGENT}.new")
        vm.run(f"chown root:root {HOSTAGENT}.new && chmod 0755 {HOSTAGENT}.new && mv -f {HOSTAGENT}.new {HOSTAGENT}"
               f" && {HOSTAGENT} --version && sync")
        before = snapshot(vm)
        vm.run(f"{LAZY_GUEST} && sync")
        vm.savevm("ready")
        # The points, as this build reaches them: install, then (from `installed`) uninstall.
        _json(vm.run(f"HOSTAGENT_FAULT_TRACE=/root/trace {INSTALL}", timeout=600))
        vm.run("sync")
        vm.savevm("installed")
        _json(vm.run(f"HOSTAGENT_FAULT_TRACE=/root/trace {UNINSTALL}", timeout=600))
        trace = vm.run("cat /root/trace").stdout.split()
        # Without a cut, the comparison holds: what the cases below rely on.
        assert hostsnap.diff(before, snapshot(vm)) == []
        ready = Prepared(vm, before, trace, time.monotonic() - started)
        yield ready
    print(f"\npower cuts: {TALLY['tried']} tried, {TALLY['recovered']} recovered "
          f"({TALLY['second_uninstall']} needed a second uninstall); prepared in {ready.prep_seconds:.0f} s "
          f"(first boot to SSH {vm.boot_seconds[0]:.0f} s); per point (s): {TALLY['seconds']}; "
          f"boots to SSH (s): {vm.boot_seconds}")


def _json(result: subprocess.CompletedProcess) -> dict:
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = None
    if result.returncode != 0 or not report or not report.get("ok"):
        raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}")
    return report


def _freeze_at(vm: VMHost, command: str, point: str, timeout: float = 600.0) -> subprocess.Popen:
    """Run the command with the point set to stop; return (its ssh) once the run is frozen there."""
    env = f"HOSTAGENT_FAULT_AT={point} HOSTAGENT_FAULT_ACTION=stop"
    proc = subprocess.Popen(vm._ssh() + [f"{env} {command}"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while REACHED.encode() + point.encode() not in seen:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"{command} ended before {point} (exit {proc.wait()}):\n"
                                         f"{seen.decode(errors='replace')[-3000:]}")
                seen += chunk
            if time.monotonic() > deadline:
                raise AssertionError(f"{point} not reached in {timeout:.0f} s")
    except BaseException:
        proc.kill()
        raise
    return proc


def _recover(vm: VMHost, before: dict) -> int:
    """After the boot: uninstall (twice at most) brings the host back. Returns the runs it took."""
    vm.wait_until_running()
    runs = 0
    while True:
        runs += 1
        result = vm.run(UNINSTALL, check=False, timeout=600)
        if result.returncode == 0:
            break
        assert runs < 2, f"uninstall failed twice: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    problems = hostsnap.diff(before, snapshot(vm))
    assert problems == [], "\n".join(problems[:40])
    return runs


@pytest.mark.parametrize("command,point,what", SELECTED, ids=[p[1] for p in SELECTED])
def test_power_cut(prepared: Prepared, command: str, point: str, what: str) -> None:
    vm = prepared.vm
    assert point in prepared.trace, f"{point} is not a fault point of this build: {prepared.trace}"
    TALLY["tried"] += 1
    started = time.monotonic()
    vm.boot(loadvm="ready" if command == "install" else "installed")
    frozen = _freeze_at(vm, INSTALL if command == "install" else UNINSTALL, point)
    vm.run("echo written > /root/canary")  # never flushed: the cut must take it
    vm.power_cut()
    frozen.kill()
    vm.boot()  # a cold boot: journal replay, a new /run, no cgroup dirs
    assert vm.run("cat /root/canary", check=False).stdout != "written\n", "the cut kept an unflushed write"
    runs = _recover(vm, prepared.before)
    TALLY["second_uninstall"] += runs == 2
    report = _json(vm.run(INSTALL, check=False, timeout=600))  # a fresh install works after it
    assert report["changed"] is True
    assert vm.run(f"systemctl is-active deepflow-agent && getcap {RUNNING}").stdout.strip().startswith("active")
    TALLY["recovered"] += 1
    TALLY["seconds"][point] = round(time.monotonic() - started)
