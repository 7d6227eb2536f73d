"""Facts: read the host, never write it. Each function is one question with a plain answer."""
from __future__ import annotations

import ctypes
import grp
import os
import pwd
import re
import struct
from typing import NamedTuple, Optional

from hostagent import paths

CGROUP2_SUPER_MAGIC = 0x63677270
TMPFS_MAGIC = 0x01021994
ST_NOSUID = 2

# Filesystems known to drop security.* xattrs, so file capabilities cannot live there.
NO_XATTR_FS = {"nfs", "nfs4", "vfat", "msdos", "exfat", "cifs", "smb3", "9p", "iso9660", "ramfs"}
NOLOGIN_SHELLS = {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/nologin"}

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
    return struct.unpack_from("l", buf.raw)[0]


# NamedTuples rather than dataclasses: `hostagent exec` imports this at every agent start, and
# dataclasses pulls in inspect (~15 ms).
class Mount(NamedTuple):
    point: str
    fstype: str
    options: tuple[str, ...]
    super_options: tuple[str, ...]


def mounts() -> list[Mount]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.rstrip("\n").split(" - ", 1)
            fields = left.split()
            fstype, _source, super_opts = (right.split() + ["", ""])[:3]
            point = fields[4].replace("\\040", " ")
            out.append(Mount(point, fstype, tuple(fields[5].split(",")), tuple(super_opts.split(","))))
    return out


def mount_of(path: str, all_mounts: Optional[list[Mount]] = None) -> Mount:
    """The mount holding path: the longest mount point that is a prefix of its real path."""
    real = os.path.realpath(path)
    best = None
    for m in all_mounts or mounts():
        prefix = m.point.rstrip("/") + "/"
        if real == m.point or real.startswith(prefix) or m.point == "/":
            if best is None or len(m.point) >= len(best.point):
                best = m
    assert best is not None
    return best


class CgroupLayout(NamedTuple):
    """mode: v1 (all legacy), hybrid (legacy + /sys/fs/cgroup/unified), v2 (unified only)."""

    mode: str
    cpu_mount: Optional[str] = None
    memory_mount: Optional[str] = None
    v2_controllers: tuple[str, ...] = ()

    def agent_dirs(self) -> list[str]:
        if self.mode == "v2":
            return [f"{paths.CGROUP_ROOT}/{paths.CGROUP_NAME}"]
        return [f"{m}/{paths.CGROUP_NAME}" for m in (self.cpu_mount, self.memory_mount) if m]


def cgroup_layout() -> CgroupLayout:
    try:
        kind = statfs_type(paths.CGROUP_ROOT)
    except OSError as e:  # a chroot or a container without /sys: refuse cleanly, nothing changed
        from hostagent.errors import InputError

        raise InputError(f"no cgroup filesystem at {paths.CGROUP_ROOT} ({e.strerror})") from None
    if kind == CGROUP2_SUPER_MAGIC:
        try:
            with open(f"{paths.CGROUP_ROOT}/cgroup.controllers") as f:
                controllers = tuple(f.read().split())
        except OSError:
            controllers = ()
        return CgroupLayout("v2", v2_controllers=controllers)
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
        hybrid = statfs_type(f"{paths.CGROUP_ROOT}/unified") == CGROUP2_SUPER_MAGIC
    except OSError:
        pass
    return CgroupLayout("hybrid" if hybrid else "v1", cpu, memory)


def systemd_booted() -> bool:
    """sd_booted(): systemd is PID 1 exactly when /run/systemd/system is a directory."""
    return os.path.isdir("/run/systemd/system")


def systemd_version() -> Optional[int]:
    import subprocess

    try:
        out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else None


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


def elf_info(path: str) -> ElfInfo:
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return ElfInfo(False)
    endian = "<" if head[5] == 1 else ">"
    return ElfInfo(True, struct.unpack_from(endian + "H", head, 18)[0], head[4])


def elf_matches_host(info: ElfInfo, machine: Optional[str] = None) -> bool:
    expected = ELF_MACHINE.get(machine or os.uname().machine)
    return expected is None or (info.machine, info.elf_class) == expected


class Account(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str
    shell: str


def user(name: str) -> Optional[Account]:
    try:
        p = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir, p.pw_shell)


def user_by_uid(uid: int) -> Optional[Account]:
    try:
        return user(pwd.getpwuid(uid).pw_name)
    except KeyError:
        return None


def group_gid(name: str) -> Optional[int]:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def group_name(gid: int) -> Optional[str]:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def unsafe_user_reason(account: Account) -> Optional[str]:
    """Why an existing account must not run the agent, or None when it is fine to reuse."""
    if account.uid == 0:
        return "has uid 0"
    if account.shell not in NOLOGIN_SHELLS:
        return f"has a login shell ({account.shell})"
    if account.home == "/home" or account.home.startswith("/home/"):
        return f"has a home under /home ({account.home})"
    return None


class HostFacts(NamedTuple):
    is_root: bool
    systemd: bool
    systemd_version: Optional[int]
    cgroup: CgroupLayout
    kernel: tuple[int, ...]
    kernel_release: str
    machine: str
    selinux: str

    def to_dict(self) -> dict:
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
    )


def fs_keeps_file_caps(path: str) -> Optional[str]:
    """None if files under path can carry working file capabilities, else the reason they cannot."""
    m = mount_of(path)
    if m.fstype in NO_XATTR_FS:
        return f"{m.point} is {m.fstype}, which does not keep security.capability xattrs"
    if "nosuid" in m.options or os.statvfs(path).f_flag & ST_NOSUID:
        return f"{m.point} is mounted nosuid, so the kernel ignores file capabilities there"
    return None
