"""Facts about the host itself: init system, kernel, SELinux, mounts, ELF files.
Each fact is a query plus a pure parser, so the parser is testable on recorded data."""
from __future__ import annotations

import ctypes
import os
import re
import struct
from typing import NamedTuple, Optional

from hostagent import host as host_mod
from hostagent.host import Host

CGROUP2_SUPER_MAGIC = 0x63677270

# Filesystems known to drop security.* xattrs, so file capabilities cannot live there.
NO_XATTR_FS = frozenset({"nfs", "nfs4", "vfat", "msdos", "exfat", "cifs", "smb3", "9p", "iso9660", "ramfs"})

# ELF e_machine per `uname -m`, with the ELF class (1 = 32-bit, 2 = 64-bit).
ELF_MACHINE = {
    "x86_64": (62, 2), "aarch64": (183, 2), "i686": (3, 1), "i386": (3, 1), "armv7l": (40, 1),
    "riscv64": (243, 2), "ppc64le": (21, 2), "s390x": (22, 2), "loongarch64": (258, 2),
}


def statfs_type(path: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)  # this process's libc
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit
    if libc.statfs(path.encode(), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(struct.unpack_from("l", buf.raw)[0])


# NamedTuples rather than dataclasses: `hostagent exec` imports this at every agent start, and
# dataclasses pulls in inspect (~15 ms).
class Mount(NamedTuple):
    point: str
    fstype: str
    options: tuple[str, ...]
    super_options: tuple[str, ...]


def parse_mountinfo(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        left, right = line.split(" - ", 1)
        fields = left.split()
        fstype, _source, super_opts = (right.split() + ["", ""])[:3]
        point = fields[4].replace("\\040", " ")
        out.append(Mount(point, fstype, tuple(fields[5].split(",")), tuple(super_opts.split(","))))
    return out


def mounts() -> list[Mount]:
    with open("/proc/self/mountinfo") as f:
        return parse_mountinfo(f.read())


def mount_of(path: str, all_mounts: Optional[list[Mount]] = None) -> Mount:
    """The mount holding path: the longest mount point that is a prefix of its real path."""
    real = os.path.realpath(path)
    best = None
    for m in all_mounts or mounts():
        prefix = m.point.rstrip("/") + "/"
        holds = real == m.point or real.startswith(prefix) or m.point == "/"
        if holds and (best is None or len(m.point) >= len(best.point)):
            best = m
    assert best is not None
    return best


def fs_keeps_file_caps(path: str) -> Optional[str]:
    """None if files under path can carry working file capabilities, else the reason they cannot."""
    m = mount_of(path)
    if m.fstype in NO_XATTR_FS:
        return f"{m.point} is {m.fstype}, which does not keep security.capability xattrs"
    if "nosuid" in m.options or os.statvfs(path).f_flag & os.ST_NOSUID:
        return f"{m.point} is mounted nosuid, so the kernel ignores file capabilities there"
    return None


PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
CAP_NET_RAW = 13


def ambient_caps_supported() -> bool:
    """Whether the kernel has ambient capabilities (Linux 4.3, or a vendor's backport): asked of the
    kernel itself, not read off its version number."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_RAW, 0, 0)) >= 0


def unsafe_path_reason(path: str) -> Optional[str]:
    """Why root must not run this file at every agent start (others could change what it runs), or
    None. Checks the file and every directory above it, after resolving symlinks."""
    real = os.path.realpath(path)
    if any(c.isspace() or c == "%" for c in real):
        return f"its path {real!r} holds a space or '%', which systemd unit lines cannot carry as they are"
    probe = real
    while True:
        st = os.stat(probe)
        if st.st_uid != 0:
            return f"{probe} is owned by uid {st.st_uid}, not root"
        if st.st_mode & 0o022 and not (os.path.isdir(probe) and st.st_mode & 0o1000):
            return f"{probe} is writable by group or others"
        if probe == "/":
            return None
        probe = os.path.dirname(probe)


def classify_init(systemd_dir: bool, openrc_softlevel: bool, pid1_name: str, inittab: bool) -> str:
    """systemd | openrc | sysvinit | unknown. sd_booted(): systemd is PID 1 exactly when
    /run/systemd/system is a directory; OpenRC (under sysvinit's PID 1 on Debian, or its own
    openrc-init) marks a booted system with /run/openrc/softlevel; else SysV init reads /etc/inittab."""
    if systemd_dir:
        return "systemd"
    if openrc_softlevel:
        return "openrc"
    if pid1_name == "init" and inittab:
        return "sysvinit"
    return "unknown"


def init_system(h: Host) -> str:
    try:
        with open("/proc/1/comm") as f:
            pid1 = f.read().strip()
    except OSError:
        pid1 = ""
    return classify_init(os.path.isdir(h.path("/run/systemd/system")), os.path.exists(h.path("/run/openrc/softlevel")),
                         pid1, os.path.isfile(h.path("/etc/inittab")))


def parse_systemctl_version(text: str) -> Optional[int]:
    m = re.match(r"systemd (\d+)", text)
    return int(m.group(1)) if m else None


def systemd_version() -> Optional[int]:
    return parse_systemctl_version(host_mod.current().output(["systemctl", "--version"]) or "")


def kernel_version(release: Optional[str] = None) -> tuple[int, ...]:
    release = release or os.uname().release
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    return tuple(int(x) for x in m.groups(default="0")) if m else (0,)


def selinux_mode() -> str:
    try:
        with open("/sys/fs/selinux/enforce") as f:
            return "enforcing" if f.read().strip() == "1" else "permissive"
    except OSError:
        return "disabled"


class ElfInfo(NamedTuple):
    is_elf: bool
    machine: Optional[int] = None
    elf_class: Optional[int] = None


def parse_elf_header(head: bytes) -> ElfInfo:
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return ElfInfo(False)
    endian = "<" if head[5] == 1 else ">"
    return ElfInfo(True, struct.unpack_from(endian + "H", head, 18)[0], head[4])


def elf_info(path: str) -> ElfInfo:
    with open(path, "rb") as f:
        return parse_elf_header(f.read(20))


def elf_matches_host(info: ElfInfo, machine: Optional[str] = None) -> bool:
    expected = ELF_MACHINE.get(machine or os.uname().machine)
    return expected is None or (info.machine, info.elf_class) == expected


class HostIdentity(NamedTuple):
    """What deepflow-server knows an agent by: its host name, its IPs (CTRL_IP, LAUNCH_SERVER), its MACs."""

    hostname: str
    ips: frozenset[str]
    macs: frozenset[str]


def host_identity() -> HostIdentity:
    """This host's name and its non-loopback addresses (loopback ones say nothing about which host it is)."""
    import ipaddress
    import socket

    import psutil

    ips, macs = set(), set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == psutil.AF_LINK and a.address and a.address != "00:00:00:00:00:00":
                macs.add(a.address.lower())
            elif a.family in (socket.AF_INET, socket.AF_INET6):
                ip = ipaddress.ip_address(a.address.split("%")[0])
                if not ip.is_loopback and not ip.is_link_local:
                    ips.add(str(ip))
    return HostIdentity(socket.gethostname(), frozenset(ips), frozenset(macs))
