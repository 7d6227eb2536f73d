"""Snapshot of the host state hostagent may touch, for before/after equality checks.

Stdlib only: it is also copied into test hosts (nspawn, VMs) and run there as
`python3 hostsnap.py [ROOTS...]`, printing JSON. A host without Python is snapshotted from
outside: `python3 hostsnap.py --root /proc/<its pid 1>/root [ROOTS...]` (or snapshot(roots, root=...))
walks that host's tree through its own mounts (its /sys/fs/cgroup included) and reads its users and
groups from its /etc/passwd and /etc/group; paths are reported as the host sees them.
"""
from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import stat
import sys

DEFAULT_ROOTS = ("/etc", "/usr", "/var/lib", "/var/log", "/sys/fs/cgroup")
# shadow-utils rewrites its backup files and lock on every useradd/userdel.
IGNORED = {
    "/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-",
    "/etc/subuid-", "/etc/subgid-", "/etc/.pwd.lock",
}
# Files whose content changes by themselves (journals, clocks, caches).
VOLATILE_PREFIXES = (
    "/var/log/journal", "/var/lib/systemd/timers", "/var/lib/systemd/random-seed",
    "/var/lib/systemd/timesync", "/var/lib/systemd/catalog", "/var/lib/apt", "/var/lib/dpkg",
    "/var/log/apt", "/var/log/dpkg.log", "/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog",
    "/var/log/faillog", "/var/log/syslog", "/var/log/messages", "/var/lib/dhcp", "/etc/ld.so.cache",
    "/var/lib/python", "/var/lib/systemd/deb-systemd",
    # SysV/OpenRC hosts: initscripts save the seed at shutdown, log dmesg and fsck at each boot.
    "/var/lib/urandom", "/var/log/dmesg", "/var/log/fsck",
    "/usr/lib/rc/cache",  # OpenRC's dependency cache, saved at shutdown
)
CGROUP_ROOT = "/sys/fs/cgroup"


def _xattrs(path: str) -> dict:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False).hex()
        except OSError:
            out[name] = None
    return out


def _entry(path: str, st: os.stat_result, with_content: bool) -> dict:
    entry = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if stat.S_ISLNK(st.st_mode):
        entry["target"] = os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        entry["size"] = st.st_size
        entry["xattrs"] = _xattrs(path)
        if with_content:
            try:
                with open(path, "rb") as f:
                    entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                entry["sha256"] = None
        else:
            entry["mtime_ns"] = st.st_mtime_ns
    elif stat.S_ISDIR(st.st_mode):
        entry["xattrs"] = _xattrs(path)
    return entry


def _walk(root: str, files: dict, prefix: str = "") -> None:
    in_cgroupfs = root.startswith(CGROUP_ROOT)
    # /usr is large: size and mtime stand in for content there (hashing it takes minutes).
    hash_content = not in_cgroupfs and not root.startswith("/usr")
    for real_dirpath, dirnames, filenames in os.walk(prefix + root, followlinks=False):
        dirpath = real_dirpath[len(prefix):]
        if dirpath.startswith(VOLATILE_PREFIXES):
            dirnames[:] = []
            continue
        if in_cgroupfs:
            # Only the directory tree and ownership matter in cgroupfs; its
            # counters change all the time. Service cgroups come and go with units.
            dirnames[:] = [d for d in dirnames if not d.endswith((".service", ".scope", ".mount", ".socket", ".swap"))]
            names = dirnames
        else:
            names = dirnames + filenames
        for name in names:
            path = os.path.join(dirpath, name)
            if path in IGNORED or path.startswith(VOLATILE_PREFIXES):
                continue
            try:
                st = os.lstat(prefix + path)
            except OSError:
                continue
            if in_cgroupfs:
                # systemd tags cgroup dirs with per-boot xattrs (trusted.invocation_id...): skip them.
                files[path] = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
            else:
                files[path] = _entry(prefix + path, st, with_content=hash_content)


def _db(prefix: str, name: str) -> list:
    """Fields of /etc/passwd or /etc/group under prefix (the files NSS source, as getpwall reads it)."""
    rows = []
    with open(f"{prefix}/etc/{name}", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith(("#", "+", "-")):
                rows.append(line.split(":"))
    return rows


def snapshot(roots=DEFAULT_ROOTS, root: str = "") -> dict:
    """The host's state; with root, the host whose / is that directory (e.g. /proc/PID/root)."""
    prefix = root.rstrip("/")
    files: dict = {}
    for top in roots:
        if os.path.isdir(prefix + top):
            _walk(top, files, prefix)
    if prefix:
        users = sorted(f"{p[0]}:{p[2]}:{p[3]}:{p[5]}:{p[6]}" for p in _db(prefix, "passwd"))
        groups = sorted(f"{g[0]}:{g[2]}:{g[3]}" for g in _db(prefix, "group"))
    else:
        users = sorted(f"{p.pw_name}:{p.pw_uid}:{p.pw_gid}:{p.pw_dir}:{p.pw_shell}" for p in pwd.getpwall())
        groups = sorted(f"{g.gr_name}:{g.gr_gid}:{','.join(g.gr_mem)}" for g in grp.getgrall())
    return {"files": files, "users": users, "groups": groups}


def diff(before: dict, after: dict) -> list:
    """Human-readable differences; empty when the host is back as it was."""
    problems = []
    for key in ("users", "groups"):
        for item in sorted(set(before[key]) ^ set(after[key])):
            side = "added" if item in after[key] else "removed"
            problems.append(f"{key[:-1]} {side}: {item}")
    b, a = before["files"], after["files"]
    for path in sorted(set(b) | set(a)):
        if path not in a:
            problems.append(f"removed: {path}")
        elif path not in b:
            problems.append(f"added: {path}")
        elif a[path] != b[path]:
            changed = sorted(k for k in set(a[path]) | set(b[path]) if a[path].get(k) != b[path].get(k))
            problems.append(f"changed: {path} ({', '.join(changed)})")
    return problems


if __name__ == "__main__":
    args = sys.argv[1:]
    prefix = ""
    if args[:1] == ["--root"]:
        prefix, args = args[1], args[2:]
    json.dump(snapshot(args or DEFAULT_ROOTS, root=prefix), sys.stdout)
