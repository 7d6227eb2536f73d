"""Facts: read the host, never write it. Each is one question with a plain answer."""
from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

from hostagent.facts.cgroups import CgroupLayout, cgroup_layout
from hostagent.facts.host import ambient_caps_supported, kernel_version, selinux_mode, systemd_version
from hostagent.host import current as current_host


class HostFacts(NamedTuple):
    is_root: bool
    init: str  # the service manager: systemd | sysvinit | openrc | unknown
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
    init = current_host().init
    return HostFacts(
        is_root=os.geteuid() == 0,
        init=init,
        systemd_version=systemd_version() if init == "systemd" else None,
        cgroup=cgroup_layout(),
        kernel=kernel_version(),
        kernel_release=os.uname().release,
        machine=os.uname().machine,
        selinux=selinux_mode(),
        ambient_caps=ambient_caps_supported(),
    )
