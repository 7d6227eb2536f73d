"""Capability names, profiles, and file capabilities (the security.capability xattr).

File capabilities are read and written as the raw VFS xattr so that no libcap tool is needed on the
host; the encoding is exactly what `setcap CAPS=eip` writes in the initial user namespace.
"""
from __future__ import annotations

import errno
import os
import struct
from typing import Iterable, Optional

from hostagent import host
from hostagent.errors import InputError

# Numbers from linux/capability.h.
CAP_NUMBERS = {
    "cap_chown": 0, "cap_dac_override": 1, "cap_dac_read_search": 2, "cap_fowner": 3,
    "cap_fsetid": 4, "cap_kill": 5, "cap_setgid": 6, "cap_setuid": 7, "cap_setpcap": 8,
    "cap_linux_immutable": 9, "cap_net_bind_service": 10, "cap_net_broadcast": 11,
    "cap_net_admin": 12, "cap_net_raw": 13, "cap_ipc_lock": 14, "cap_ipc_owner": 15,
    "cap_sys_module": 16, "cap_sys_rawio": 17, "cap_sys_chroot": 18, "cap_sys_ptrace": 19,
    "cap_sys_pacct": 20, "cap_sys_admin": 21, "cap_sys_boot": 22, "cap_sys_nice": 23,
    "cap_sys_resource": 24, "cap_sys_time": 25, "cap_sys_tty_config": 26, "cap_mknod": 27,
    "cap_lease": 28, "cap_audit_write": 29, "cap_audit_control": 30, "cap_setfcap": 31,
    "cap_mac_override": 32, "cap_mac_admin": 33, "cap_syslog": 34, "cap_wake_alarm": 35,
    "cap_block_suspend": 36, "cap_audit_read": 37, "cap_perfmon": 38, "cap_bpf": 39,
    "cap_checkpoint_restore": 40,
}
CAP_NAMES = {number: name for name, number in CAP_NUMBERS.items()}

_DOC = ("cap_sys_ptrace", "cap_net_raw", "cap_net_admin", "cap_ipc_lock", "cap_sys_admin")
PROFILES = {
    # DeepFlow's documented non-root setcap line.
    "deepflow-doc": _DOC,
    # AF_PACKET capture and K8s process info, without CAP_SYS_ADMIN (ARP-based NIC mapping).
    "cbpf-minimal": ("cap_net_raw", "cap_net_admin", "cap_sys_ptrace", "cap_ipc_lock"),
    # eBPF needs resource and syslog (kallsyms); bpf/perfmon are added on kernel >= 5.8.
    "ebpf": _DOC + ("cap_sys_resource", "cap_syslog"),
}
DEFAULT_PROFILE = "deepflow-doc"

XATTR = host.CAPS_XATTR
_VFS_CAP_REVISION_1 = 0x01000000
_VFS_CAP_REVISION_2 = 0x02000000
_VFS_CAP_REVISION_3 = 0x03000000
_VFS_CAP_REVISION_MASK = 0xFF000000
_VFS_CAP_FLAGS_EFFECTIVE = 0x000001


def resolve(spec: str, kernel: tuple[int, ...] = (0,)) -> tuple[str, ...]:
    """A profile name or a comma-separated list → sorted capability names; unknown names refused."""
    spec = spec.strip()
    if spec in PROFILES:
        names = list(PROFILES[spec])
        if spec == "ebpf" and kernel >= (5, 8):
            names += ["cap_bpf", "cap_perfmon"]
    else:
        names = []
        for raw in spec.split(","):
            name = raw.strip().lower()
            if not name:
                continue
            if not name.startswith("cap_"):
                name = "cap_" + name
            if name not in CAP_NUMBERS:
                known = ", ".join(sorted(PROFILES))
                raise InputError(f"unknown capability {raw.strip()!r} (profiles: {known}; or a list like cap_net_raw,cap_net_admin)")
            names.append(name)
        if not names:
            raise InputError("empty capability list")
    return tuple(sorted(set(names), key=CAP_NUMBERS.__getitem__))


def mask(names: Iterable[str]) -> int:
    value = 0
    for name in names:
        value |= 1 << CAP_NUMBERS[name]
    return value


def names_of(value: int) -> list[str]:
    return [CAP_NAMES.get(bit, f"cap_{bit}") for bit in range(64) if value >> bit & 1]


def encode_file_caps(names: Iterable[str]) -> bytes:
    """The xattr `setcap NAMES=eip` writes: revision 2, effective flag, permitted = inheritable."""
    value = mask(names)
    lo, hi = value & 0xFFFFFFFF, value >> 32
    return struct.pack("<IIIII", _VFS_CAP_REVISION_2 | _VFS_CAP_FLAGS_EFFECTIVE, lo, lo, hi, hi)


def decode_file_caps(raw: bytes) -> dict:
    """Parse a security.capability value into permitted/inheritable masks and the effective flag."""
    magic = struct.unpack_from("<I", raw)[0]
    revision = magic & _VFS_CAP_REVISION_MASK
    if revision == _VFS_CAP_REVISION_1:
        permitted, inheritable = struct.unpack_from("<II", raw, 4)
    elif revision in (_VFS_CAP_REVISION_2, _VFS_CAP_REVISION_3):
        plo, ilo, phi, ihi = struct.unpack_from("<IIII", raw, 4)
        permitted, inheritable = plo | phi << 32, ilo | ihi << 32
    else:
        raise ValueError(f"unknown file capability revision {revision:#x}")
    return {"permitted": permitted, "inheritable": inheritable,
            "effective": bool(magic & _VFS_CAP_FLAGS_EFFECTIVE)}


def read_file_caps(path: str) -> Optional[bytes]:
    try:
        return os.getxattr(path, host.current().caps_xattr, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.EOPNOTSUPP):  # no caps; no xattrs here
            return None
        raise


def file_caps_match(raw: Optional[bytes], names: Iterable[str]) -> bool:
    if raw is None:
        return False
    try:
        parsed = decode_file_caps(raw)
    except (ValueError, struct.error):
        return False
    want = mask(names)
    return parsed["effective"] and parsed["permitted"] == want and parsed["inheritable"] == want


def describe_file_caps(raw: Optional[bytes]) -> str:
    """Like getcap's output: 'cap_a,cap_b=eip', or '' when there are none."""
    if raw is None:
        return ""
    parsed = decode_file_caps(raw)
    perm, inh = parsed["permitted"], parsed["inheritable"]
    flags = ("e" if parsed["effective"] else "") + "i"
    if perm == inh:
        return ",".join(names_of(perm)) + "=" + flags + "p"
    return f"permitted={','.join(names_of(perm))} inheritable={','.join(names_of(inh))}"


def write_file_caps(fd: int, names: Iterable[str]) -> None:
    """Set caps on an open file (fd, so a swapped-in symlink cannot redirect the write)."""
    os.setxattr(fd, host.current().caps_xattr, encode_file_caps(names))


def proc_caps(pid: int | str = "self") -> dict:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of a process, as ints."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cap"):
                key, value = line.split(":", 1)
                out[key] = int(value.strip(), 16)
    return out
