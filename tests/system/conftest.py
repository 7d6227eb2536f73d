"""Options and helpers for the testinfra host suite (tests/system/test_host_state.py).

The suite checks a host that `hostagent install` (or `uninstall`) ran on:

    pytest tests/system/test_host_state.py --hosts=ssh://root@HOST            # after install
    pytest tests/system/test_host_state.py --hosts=local:// --state=absent    # after uninstall
    pytest tests/system/test_host_state.py --hosts=ansible://all --ansible-inventory=INV

Without --hosts, testinfra would default to this machine: the suite is skipped instead.
Expected values are options, defaulting to `hostagent install`'s defaults.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

SYSTEM_DIR = Path(__file__).resolve().parent
# Suites that need a --hosts target; the e2e tests boot their own host.
HOST_SUITES = {"test_host_state.py"}

# Linux capability numbers (include/uapi/linux/capability.h), names as libcap prints them.
CAP_NUMBERS = {
    "cap_chown": 0, "cap_dac_override": 1, "cap_dac_read_search": 2, "cap_fowner": 3, "cap_fsetid": 4,
    "cap_kill": 5, "cap_setgid": 6, "cap_setuid": 7, "cap_setpcap": 8, "cap_linux_immutable": 9,
    "cap_net_bind_service": 10, "cap_net_broadcast": 11, "cap_net_admin": 12, "cap_net_raw": 13,
    "cap_ipc_lock": 14, "cap_ipc_owner": 15, "cap_sys_module": 16, "cap_sys_rawio": 17, "cap_sys_chroot": 18,
    "cap_sys_ptrace": 19, "cap_sys_pacct": 20, "cap_sys_admin": 21, "cap_sys_boot": 22, "cap_sys_nice": 23,
    "cap_sys_resource": 24, "cap_sys_time": 25, "cap_sys_tty_config": 26, "cap_mknod": 27, "cap_lease": 28,
    "cap_audit_write": 29, "cap_audit_control": 30, "cap_setfcap": 31, "cap_mac_override": 32,
    "cap_mac_admin": 33, "cap_syslog": 34, "cap_wake_alarm": 35, "cap_block_suspend": 36, "cap_audit_read": 37,
    "cap_perfmon": 38, "cap_bpf": 39, "cap_checkpoint_restore": 40,
}
PROFILES = {
    "deepflow-doc": ("cap_sys_ptrace", "cap_net_raw", "cap_net_admin", "cap_ipc_lock", "cap_sys_admin"),
    "cbpf-minimal": ("cap_net_raw", "cap_net_admin", "cap_sys_ptrace", "cap_ipc_lock"),
}


def caps_mask(names) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAP_NUMBERS[name]
    return mask


def parse_caps(spec: str) -> frozenset:
    """A profile name (ebpf not included: it depends on the kernel) or cap_a,cap_b."""
    if spec in PROFILES:
        return frozenset(PROFILES[spec])
    names = frozenset(n.strip().lower() for n in spec.split(",") if n.strip())
    unknown = names - set(CAP_NUMBERS)
    if unknown:
        raise pytest.UsageError(f"unknown capabilities: {sorted(unknown)}")
    return names


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hostagent host suite")
    group.addoption("--state", choices=("installed", "absent"), default="installed",
                    help="what the suite asserts: after install, or after uninstall")
    group.addoption("--agent-user", default="deepflow")
    group.addoption("--agent-caps", default="deepflow-doc", help="profile name or cap_a,cap_b")
    group.addoption("--cpu-millicores", type=int, default=1000)
    group.addoption("--memory-mib", type=int, default=768)
    group.addoption("--controller-ip", action="append", default=None)
    group.addoption("--snapshot-before", default=None,
                    help="hostsnap JSON taken on the target before install; --state=absent compares to it")


@dataclass(frozen=True)
class Expected:
    state: str
    user: str
    caps: frozenset
    cpu_millicores: int
    memory_mib: int
    controller_ips: tuple
    snapshot_before: Optional[dict]

    @property
    def cap_mask(self) -> int:
        return caps_mask(self.caps)

    @property
    def cfs_quota_us(self) -> int:
        return self.cpu_millicores * 100  # of a 100000 us period

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 1024 * 1024


def _opt(config: pytest.Config, name: str, default):
    # Options exist only when this conftest was loaded at start-up (pytest tests/system ...).
    try:
        value = config.getoption(name)
    except ValueError:
        return default
    return default if value is None else value


@pytest.fixture(scope="session")
def expected(pytestconfig: pytest.Config) -> Expected:
    snap_path = _opt(pytestconfig, "--snapshot-before", None)
    return Expected(
        state=_opt(pytestconfig, "--state", "installed"),
        user=_opt(pytestconfig, "--agent-user", "deepflow"),
        caps=parse_caps(_opt(pytestconfig, "--agent-caps", "deepflow-doc")),
        cpu_millicores=_opt(pytestconfig, "--cpu-millicores", 1000),
        memory_mib=_opt(pytestconfig, "--memory-mib", 768),
        controller_ips=tuple(_opt(pytestconfig, "--controller-ip", None) or ["127.0.0.1"]),
        snapshot_before=json.loads(Path(snap_path).read_text()) if snap_path else None,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    has_hosts = bool(config.getoption("hosts", default=None))
    skip = pytest.mark.skip(reason="host suite: give --hosts (local://, ssh://..., ansible://...) to run it")
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == SYSTEM_DIR and path.name in HOST_SUITES and not has_hosts:
            item.add_marker(skip)


def comparable(snapshot: dict) -> dict:
    """A hostsnap snapshot without what every boot changes by itself: systemd tags each
    cgroup dir with its unit's invocation id (xattrs trusted./user.invocation_id)."""
    files = {}
    for path, entry in snapshot["files"].items():
        if path.startswith("/sys/fs/cgroup/") and entry.get("xattrs"):
            entry = dict(entry, xattrs={k: v for k, v in entry["xattrs"].items() if not k.endswith(".invocation_id")})
        files[path] = entry
    return dict(snapshot, files=files)
