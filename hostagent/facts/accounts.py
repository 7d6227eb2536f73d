"""Facts about accounts: users and groups, read from the host's name service."""
from __future__ import annotations

import grp
import os
import pwd
from typing import NamedTuple, Optional

NOLOGIN_SHELLS = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/nologin"})


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


def group_members(gid: int) -> set[str]:
    """Every account in a group: its supplementary members and the users whose primary group it is."""
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        members = set()
    return members | {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid}


def unsafe_user_reason(account: Account) -> Optional[str]:
    """Why an existing account must not run the agent, or None when it is fine to reuse."""
    if account.uid == 0:
        return "has uid 0"
    group = group_name(account.gid)
    if group != account.name or group_members(account.gid) - {account.name}:
        # Members of a shared group (nogroup, users, …) could run the capability-carrying binary.
        return f"has a shared primary group ({group or account.gid}), not one of its own"
    if account.shell not in NOLOGIN_SHELLS:
        return f"has a login shell ({account.shell})"
    if account.home == "/home" or account.home.startswith("/home/"):
        return f"has a home under /home ({account.home})"
    return None


def nologin_shell() -> str:
    for shell in ("/usr/sbin/nologin", "/sbin/nologin"):
        if os.path.exists(shell):
            return shell
    return "/bin/false"
