"""Facts about accounts: users and groups, read from the host's name service (NSS, so LDAP and
sssd users count), or from the passwd and group files of a host under a temp root."""
from __future__ import annotations

import grp
import os
import pwd
from typing import Any, NamedTuple, Optional

from hostagent import host

NOLOGIN_SHELLS = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/nologin"})


class Account(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str
    shell: str


class Group(NamedTuple):
    name: str
    gid: int
    members: tuple[str, ...]


def parse_passwd(text: str) -> list[Account]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) == 7 and f[2].isdigit() and f[3].isdigit():
            out.append(Account(f[0], int(f[2]), int(f[3]), f[5], f[6]))
    return out


def parse_group(text: str) -> list[Group]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) == 4 and f[2].isdigit():
            out.append(Group(f[0], int(f[2]), tuple(m for m in f[3].split(",") if m)))
    return out


def _file_db(name: str) -> str:
    try:
        with open(host.current().path(f"/etc/{name}")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def users() -> list[Account]:
    if host.current().local:
        return [Account(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir, p.pw_shell) for p in pwd.getpwall()]
    return parse_passwd(_file_db("passwd"))


def groups() -> list[Group]:
    if host.current().local:
        return [Group(g.gr_name, g.gr_gid, tuple(g.gr_mem)) for g in grp.getgrall()]
    return parse_group(_file_db("group"))


def _first(found: Any) -> Any:
    return next(iter(found), None)


def user(name: str) -> Optional[Account]:
    if not host.current().local:
        return _first(a for a in users() if a.name == name)
    try:
        p = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir, p.pw_shell)


def user_by_uid(uid: int) -> Optional[Account]:
    if not host.current().local:
        return _first(a for a in users() if a.uid == uid)
    try:
        return user(pwd.getpwuid(uid).pw_name)
    except KeyError:
        return None


def group_gid(name: str) -> Optional[int]:
    if not host.current().local:
        return _first(g.gid for g in groups() if g.name == name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def group_name(gid: int) -> Optional[str]:
    if not host.current().local:
        return _first(g.name for g in groups() if g.gid == gid)
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def group_members(gid: int) -> set[str]:
    """Every account in a group: its supplementary members and the users whose primary group it is."""
    members = {m for g in groups() if g.gid == gid for m in g.members}
    return members | {a.name for a in users() if a.gid == gid}


def ids(owner: str, group: str) -> tuple[Optional[int], Optional[int]]:
    """uid and gid by name (root's too: under a temp root it is whoever runs the tests)."""
    account = user(owner)
    return (account.uid if account else None), group_gid(group)


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
        if os.path.exists(host.current().path(shell)):
            return shell
    return "/bin/false"
