"""Facts about cgroups: the mode (v1, hybrid, v2), where the v1 controllers are mounted, and what
a cgroup directory holds."""
from __future__ import annotations

import os
from typing import NamedTuple, Optional

from hostagent import host
from hostagent.errors import InputError
from hostagent.facts.host import CGROUP2_SUPER_MAGIC, mounts, statfs_type
from hostagent.host import paths


class CgroupLayout(NamedTuple):
    """mode: v1 (all legacy), hybrid (legacy + /sys/fs/cgroup/unified), v2 (unified only)."""

    mode: str
    cpu_mount: Optional[str] = None
    memory_mount: Optional[str] = None
    v2_controllers: tuple[str, ...] = ()


def cgroup_root() -> str:
    return host.current().path(paths.CGROUP_ROOT)


def cgroup_layout() -> CgroupLayout:
    try:
        kind = statfs_type(cgroup_root())
    except OSError as e:  # a chroot or a container without /sys: refuse cleanly, nothing changed
        raise InputError(f"no cgroup filesystem at {paths.CGROUP_ROOT} ({e.strerror})") from None
    if kind == CGROUP2_SUPER_MAGIC:
        return CgroupLayout("v2", v2_controllers=tuple((read(f"{cgroup_root()}/cgroup.controllers") or "").split()))
    cpu = memory = None
    for m in mounts():
        if m.fstype != "cgroup":
            continue
        # The agent (cgroups-rs) takes the first mount of each controller in mountinfo.
        if "cpu" in m.super_options and cpu is None:
            cpu = m.point
        if "memory" in m.super_options and memory is None:
            memory = m.point
    hybrid = False
    try:
        hybrid = statfs_type(f"{cgroup_root()}/unified") == CGROUP2_SUPER_MAGIC
    except OSError:
        pass
    return CgroupLayout("hybrid" if hybrid else "v1", cpu, memory)


def read(path: str) -> Optional[str]:
    """A cgroup file's value, stripped; None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def enabled_v2_controllers() -> set[str]:
    return set((read(f"{cgroup_root()}/cgroup.subtree_control") or "").split())


def pids_in(directory: str) -> list[int]:
    """Processes in a cgroup directory and every child cgroup below it."""
    pids: list[int] = []
    for root, _dirs, _files in os.walk(directory):
        pids += [int(x) for x in (read(os.path.join(root, "cgroup.procs")) or "").split()]
    return pids
