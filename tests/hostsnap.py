"""Snapshot of the host state hostagent may touch, for before/after equality checks.

Stdlib only: it is also copied into test hosts (nspawn, VMs) and run there as
`python3 hostsnap.py [ROOTS...]`, printing JSON.
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


def _walk(root: str, files: dict) -> None:
    in_cgroupfs = root.startswith(CGROUP_ROOT)
    # /usr is large: size and mtime stand in for content there (hashing it takes minutes).
    hash_content = not in_cgroupfs and not root.startswith("/usr")
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
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
                st = os.lstat(path)
            except OSError:
                continue
            if in_cgroupfs:
                # systemd tags cgroup dirs with per-boot xattrs (trusted.invocation_id...): skip them.
                files[path] = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
            else:
                files[path] = _entry(path, st, with_content=hash_content)


def snapshot(roots=DEFAULT_ROOTS) -> dict:
    files: dict = {}
    for root in roots:
        if os.path.isdir(root):
            _walk(root, files)
    return {
        "files": files,
        "users": sorted(f"{p.pw_name}:{p.pw_uid}:{p.pw_gid}:{p.pw_dir}:{p.pw_shell}" for p in pwd.getpwall()),
        "groups": sorted(f"{g.gr_name}:{g.gr_gid}:{','.join(g.gr_mem)}" for g in grp.getgrall()),
    }


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
    json.dump(snapshot(sys.argv[1:] or DEFAULT_ROOTS), sys.stdout)
