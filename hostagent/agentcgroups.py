"""The agent's cgroup directories, prepared so the agent's own cgroup code succeeds as a non-root user.

The agent (cgroups-rs) hard-codes <cpu mount>/deepflow-agent and <memory mount>/deepflow-agent on v1,
and /sys/fs/cgroup/deepflow-agent on v2. It writes its pid into cgroup.procs, then the CPU limit
(read back; a failure there makes it exit and crash-loop) and the memory limit. So the dirs and those
files must be owned by the agent's user. Used by the install step and by the launcher at every start
(cgroupfs is in memory: the dirs are gone after a reboot).

The limits belong to the agent's group config (global.limits): the agent writes them itself once it
has its config and again whenever they change. Install's limits are only the ones in force until then,
so they are written into a directory only when it is created here, never over what the agent wrote;
and drift checks the files' presence and owner, not their values.
"""
from __future__ import annotations

import os
import signal
import time
from typing import NamedTuple, Optional

from hostagent import faults
from hostagent.facts.cgroups import CgroupLayout, cgroup_root, enabled_v2_controllers, pids_in, read
from hostagent.host import paths

CPU_PERIOD_US = 100_000
V1_FILES = ("cgroup.procs", "tasks", "cpu.cfs_period_us", "cpu.cfs_quota_us", "memory.limit_in_bytes")
V2_FILES = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cpu.max", "memory.max")


def agent_dirs(layout: CgroupLayout) -> list[str]:
    """Where the agent puts itself: the paths are the agent's, not ours to choose."""
    if layout.mode == "v2":
        return [f"{cgroup_root()}/{paths.CGROUP_NAME}"]
    return [f"{m}/{paths.CGROUP_NAME}" for m in (layout.cpu_mount, layout.memory_mount) if m]


class Limits(NamedTuple):
    cpu_millicores: int
    memory_mib: int

    @property
    def cpu_quota_us(self) -> int:
        return self.cpu_millicores * 100  # the agent's own conversion (period 100 ms)

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib << 20

    def wanted_files(self, layout: CgroupLayout) -> dict[str, str]:
        """Limit file name → value, as the kernel prints it back."""
        if layout.mode == "v2":
            return {"cpu.max": f"{self.cpu_quota_us} {CPU_PERIOD_US}", "memory.max": str(self.memory_bytes)}
        return {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(self.cpu_quota_us),
                "memory.limit_in_bytes": str(self.memory_bytes)}


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def enable_v2_controllers() -> list[str]:
    """Enable cpu and memory for children of the root; returns those this call turned on."""
    turned_on = []
    for controller in ("cpu", "memory"):
        if controller not in enabled_v2_controllers():
            _write(f"{cgroup_root()}/cgroup.subtree_control", f"+{controller}")
            turned_on.append(controller)
    return turned_on


def disable_v2_controller(controller: str) -> None:
    try:
        _write(f"{cgroup_root()}/cgroup.subtree_control", f"-{controller}")
    except OSError:
        pass  # still in use by other cgroups (systemd enables it anyway); leaving it on is harmless


LIMIT_FILES = ("cpu.max", "memory.max", "cpu.cfs_period_us", "cpu.cfs_quota_us", "memory.limit_in_bytes")


def read_limits(directory: str, layout: CgroupLayout) -> dict[str, str]:
    """The limit files of a cgroup dir as they are now, to put back on revert."""
    values = {}
    for name in LIMIT_FILES:
        value = read(os.path.join(directory, name))
        if value is not None:
            values[name] = value
    return values


def write_limits(directory: str, values: dict[str, str]) -> None:
    # The period before the quota: v1 refuses a quota that does not fit the period in force.
    for name in sorted(values, key=lambda n: n != "cpu.cfs_period_us"):
        path = os.path.join(directory, name)
        if os.path.exists(path) and read(path) != values[name]:
            _write(path, values[name])


def _owned_files(directory: str, layout: CgroupLayout) -> list[str]:
    names = V2_FILES if layout.mode == "v2" else V1_FILES
    return [n for n in names if os.path.exists(os.path.join(directory, n))]


def ensure(layout: CgroupLayout, limits: Limits, uid: int, gid: int) -> list[str]:
    """Create and hand over the agent's cgroup dirs; set the initial limits in those this call created
    (elsewhere the agent's own, from its group config, stand); returns the dirs this call created."""
    created = []
    if layout.mode == "v2":
        enable_v2_controllers()
    for directory in agent_dirs(layout):
        if os.path.islink(directory):
            raise OSError(f"{directory} is a symlink")
        if not os.path.isdir(directory):
            os.mkdir(directory, 0o755)
            created.append(directory)
            faults.point(f"inside:mkdir:{directory}")
        os.chown(directory, uid, gid, follow_symlinks=False)
        for name in _owned_files(directory, layout):
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)
        if directory not in created:
            continue
        for name, value in limits.wanted_files(layout).items():
            path = os.path.join(directory, name)
            if os.path.exists(path) and read(path) != value:
                _write(path, value)
    return created


def drift(layout: CgroupLayout, limits: Limits, uid: int, gid: int) -> list[str]:
    """What differs from ensure()'s result; empty when the dirs are right. Limit values are the agent's
    (its group config): only that each limit file is there and the agent's user owns it."""
    problems = []
    if layout.mode == "v2":
        missing = {"cpu", "memory"} - enabled_v2_controllers()
        if missing:
            problems.append(f"controllers not enabled in {cgroup_root()}/cgroup.subtree_control: {', '.join(sorted(missing))}")
    for directory in agent_dirs(layout):
        try:
            st = os.lstat(directory)
        except FileNotFoundError:
            problems.append(f"{directory} is missing")
            continue
        if (st.st_uid, st.st_gid) != (uid, gid):
            problems.append(f"{directory} is owned by {st.st_uid}:{st.st_gid}, not {uid}:{gid}")
        for name in _owned_files(directory, layout):
            fst = os.lstat(os.path.join(directory, name))
            if (fst.st_uid, fst.st_gid) != (uid, gid):
                problems.append(f"{directory}/{name} is owned by {fst.st_uid}:{fst.st_gid}")
        for name in limits.wanted_files(layout):
            path = os.path.join(directory, name)
            if directory in _dirs_holding(layout, name) and not os.path.exists(path):
                problems.append(f"{path} is missing (controller not enabled?)")
    return problems


def _dirs_holding(layout: CgroupLayout, name: str) -> list[str]:
    """The agent dirs in which a limit file belongs (v1: cpu.* in the cpu hierarchy, memory.* in memory)."""
    if layout.mode == "v2":
        return agent_dirs(layout)
    mount = layout.cpu_mount if name.startswith("cpu.") else layout.memory_mount
    return [f"{mount}/{paths.CGROUP_NAME}"] if mount else []


def in_force(layout: CgroupLayout) -> dict[str, Optional[int]]:
    """The limits the agent's cgroup has now, as global.limits counts them: max_millicpus and max_memory
    (MiB); None where unlimited ("max", -1) or unreadable."""
    def number(path: str) -> Optional[int]:
        text = read(path)
        return int(text) if text is not None and text.lstrip("-").isdigit() else None

    cpu: Optional[int] = None
    mem: Optional[int] = None
    if layout.mode == "v2":
        base = f"{cgroup_root()}/{paths.CGROUP_NAME}"
        quota, _, period = (read(f"{base}/cpu.max") or "").partition(" ")
        if quota.isdigit() and period.isdigit() and int(period):
            cpu = int(quota) * 1000 // int(period)
        mem = number(f"{base}/memory.max")
    else:
        if layout.cpu_mount:
            quota_us = number(f"{layout.cpu_mount}/{paths.CGROUP_NAME}/cpu.cfs_quota_us")
            period_us = number(f"{layout.cpu_mount}/{paths.CGROUP_NAME}/cpu.cfs_period_us")
            if quota_us is not None and quota_us > 0 and period_us:
                cpu = quota_us * 1000 // period_us
        if layout.memory_mount:
            mem = number(f"{layout.memory_mount}/{paths.CGROUP_NAME}/memory.limit_in_bytes")
            mem = None if mem is not None and mem >= 1 << 62 else mem  # v1's "no limit" is a huge number
    return {"max_millicpus": cpu, "max_memory": mem >> 20 if mem is not None and mem > 0 else None}


def join(layout: CgroupLayout, pid: int) -> None:
    """Move pid into the agent's cgroups (as root; on v2 the kernel demands write access to the
    common ancestor's cgroup.procs, which only root has)."""
    for directory in agent_dirs(layout):
        _write(os.path.join(directory, "cgroup.procs"), str(pid))


def kill_all(directory: str) -> None:
    """SIGKILL every process in the cgroup and its children (the agent could move some there)."""
    for pid in pids_in(directory):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove(directory: str, timeout: float = 10.0) -> None:
    """rmdir it, children first, once its processes are gone (they may take a moment to exit)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for root, dirs, _files in os.walk(directory, topdown=False):
                for d in dirs:
                    os.rmdir(os.path.join(root, d))
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise OSError(f"cannot remove {directory}: processes still inside: {pids_in(directory)}") from None
            time.sleep(0.05)
