"""Facts: read the host, never write it. Each is one question with a plain answer."""
from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

from hostagent.facts.cgroups import CgroupLayout, cgroup_layout
from hostagent.facts.host import ambient_caps_supported, kernel_version, selinux_mode, systemd_booted, systemd_version


class HostFacts(NamedTuple):
    is_root: bool
    systemd: bool
    systemd_version: Optional[int]
    cgroup: CgroupLayout
    kernel: tuple[int, ...]
    kernel_release: str
    machine: str
    selinux: str
    ambient_caps: bool

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["cgroup"] = self.cgroup._asdict()
        return d


def gather() -> HostFacts:
    booted = systemd_booted()
    return HostFacts(
        is_root=os.geteuid() == 0,
        systemd=booted,
        systemd_version=systemd_version() if booted else None,
        cgroup=cgroup_layout(),
        kernel=kernel_version(),
        kernel_release=os.uname().release,
        machine=os.uname().machine,
        selinux=selinux_mode(),
        ambient_caps=ambient_caps_supported(),
    )
