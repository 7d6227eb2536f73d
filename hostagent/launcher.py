"""`hostagent exec`: the privilege manager between the init system and the agent.

Started as root (by systemd, SysV init or supervisord), it does the work only root can do at every
start, then becomes the agent's user with exactly the agent's capabilities and execs the agent:
  1. recreate the cgroup dirs (cgroupfs forgets them at reboot) with owner, and the initial limits in
     the dirs it creates (the agent then writes its group's global.limits; never overwritten here);
  2. move itself into them: on cgroup v2 the kernel only lets a writer of the common ancestor's
     cgroup.procs (root) do that, so a non-root agent could never join on its own;
  3. restore owner, mode and file capabilities of the binary if an upgrade replaced it (the agent's own,
     in a dir its user may write: only a file that user owns, never a link; see ensure_binary);
  4. drop to the user: bounding set = the profile, setresuid with keepcaps, then
     permitted = effective = inheritable = ambient = the profile; exec.
After the exec no process of the service runs as root, and the agent's own cgroup writes succeed
because it is already inside its cgroup and owns the files.
"""
from __future__ import annotations

import ctypes
import os
import stat
import sys
from typing import Mapping, Optional

from hostagent import agentcgroups, caps, host
from hostagent.errors import HostagentError
from hostagent.facts import accounts
from hostagent.facts.cgroups import cgroup_layout
from hostagent.facts.files import open_nofollow
from hostagent.facts.host import kernel_version
from hostagent.host import fs as fsutil
from hostagent.host.run import host_library_path

PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2


def log(message: str) -> None:
    print(f"hostagent exec: {message}", file=sys.stderr, flush=True)


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(caps.CAP_NAMES)


# What the agent's own upgrade (synchronizer.rs) leaves beside its binary if it is cut short.
UPGRADE_LEFTOVERS = (".test", ".bak")


def _user_writable_dir(path: str) -> bool:
    st = os.lstat(os.path.dirname(path) or "/")
    return st.st_uid != 0 or bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _check_upgraded(binary: str, st: os.stat_result, uid: int, gid: int) -> None:
    """In a dir the agent's user can write, root takes over only a file that user wrote (its own upgrade)
    or that is already root:gid, and never one with another name elsewhere (a hard link to a file the
    user must not get: chown and caps would change that file too)."""
    ours = (st.st_uid, st.st_gid) == (0, gid) or st.st_uid == uid
    if st.st_nlink != 1 or not ours:
        raise OSError(f"{binary} is not the agent's own upgrade (owner {st.st_uid}:{st.st_gid}, {st.st_nlink} links); "
                      "refusing to give it capabilities: re-run hostagent install")


def ensure_binary(binary: str, cap_names: tuple[str, ...], gid: int, uid: Optional[int] = None) -> bool:
    """Owner root:gid, mode 0750 and the file caps; returns True if anything had to be fixed. uid: the
    agent's user (given, a binary in a dir that user can write must be its own upgrade)."""
    fd = open_nofollow(binary, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO planted there must not hang a start
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{binary} is not a regular file")
        if uid is not None and _user_writable_dir(binary):
            _check_upgraded(binary, st, uid, gid)
            for suffix in UPGRADE_LEFTOVERS:  # an upgrade cut short; the agent is not running now
                try:
                    os.unlink(binary + suffix)
                except FileNotFoundError:
                    pass
        fixed = False
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (0, gid, 0o750):
            os.fchown(fd, 0, gid)  # clears file caps, so they are set after
            os.fchmod(fd, 0o750)
            fixed = True
        try:
            current = os.getxattr(fd, host.current().caps_xattr)
        except OSError:
            current = None
        if not caps.file_caps_match(current, cap_names):
            caps.write_file_caps(fd, cap_names)
            fixed = True
        return fixed
    finally:
        os.close(fd)


def drop_privileges(uid: int, gid: int, cap_names: tuple[str, ...]) -> None:
    import prctl

    keep = {caps.CAP_NUMBERS[n] for n in cap_names}
    for number in range(_last_cap() + 1):
        if number not in keep and prctl.capbset_read(number):
            prctl.capbset_drop(number)
    prctl.set_keepcaps(True)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    others = [n for n in range(_last_cap() + 1) if n not in keep and n in prctl.ALL_CAPS]
    kept = sorted(keep)
    prctl.set_caps(
        (kept, prctl.CAP_PERMITTED, True), (kept, prctl.CAP_EFFECTIVE, True), (kept, prctl.CAP_INHERITABLE, True),
        (others, prctl.CAP_PERMITTED, False), (others, prctl.CAP_EFFECTIVE, False), (others, prctl.CAP_INHERITABLE, False),
    )
    # Ambient caps carry the set across exec even if the binary's file caps are missing.
    libc = ctypes.CDLL(None, use_errno=True)
    for number in kept:
        if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, number, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot raise ambient {caps.CAP_NAMES[number]}: {os.strerror(err)}")
    prctl.set_keepcaps(False)
    got = caps.proc_caps()
    want = caps.mask(cap_names)
    if os.getuid() != uid or got["CapEff"] != want or got["CapPrm"] != want or got["CapBnd"] != want:
        raise OSError(f"privilege drop did not take: uid {os.getuid()}, caps {got}")


def _start_checks(user: str, argv: list[str]) -> accounts.Account:
    if os.geteuid() != 0:
        raise SystemExit("hostagent exec: must start as root (it drops to the agent's user itself)")
    if not argv:
        raise SystemExit("hostagent exec: no agent command given (hostagent exec [options] -- AGENT ARGS)")
    account = accounts.user(user)
    if account is None:
        raise SystemExit(f"hostagent exec: user {user} does not exist")
    return account


def prepare(user: str, cap_spec: str, cpu_millicores: int, memory_mib: int, argv: list[str],
            log_dir: Optional[str] = None) -> None:
    """The part that needs full root: cgroup dirs with owner and limits, the binary's owner, mode and
    capabilities. The unit runs it as ExecStartPre=+ so the agent's own start can be sandboxed."""
    account = _start_checks(user, argv)
    cap_names = caps.resolve(cap_spec, kernel_version())
    layout = cgroup_layout()
    created = agentcgroups.ensure(layout, agentcgroups.Limits(cpu_millicores, memory_mib), account.uid, account.gid)
    log(f"cgroup {layout.mode}: {' '.join(agentcgroups.agent_dirs(layout))}" + (" (recreated)" if created else ""))
    binary = argv[0]
    if binary.startswith("/") and ensure_binary(binary, cap_names, account.gid, account.uid):
        log(f"restored owner, mode and capabilities of {binary} (replaced by an upgrade?)")
    if log_dir and not os.path.lexists(log_dir) and os.path.isdir(os.path.dirname(log_dir)):
        # Removed by hand or by a cleanup: the agent would fail to open its log.
        fsutil.make_dir(log_dir, 0o750, account.uid, account.gid)
        log(f"recreated {log_dir}")


def _close_inherited_fds() -> None:
    """An init other than systemd may pass its own descriptors on: the agent gets only 0, 1 and 2."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory's own fd, already closed


# Never passed to the agent: IN_CONTAINER would make it skip its cgroups; the rest is the single file's
# bundle (PyInstaller's loader state, its Python's settings).
DROPPED_ENV = ("IN_CONTAINER", "LD_LIBRARY_PATH_ORIG", "HOSTAGENT_UNPACKED")
DROPPED_ENV_PREFIXES = ("_PYI", "_MEI", "PYTHON")


def agent_env(environ: Mapping[str, str], frozen: bool) -> dict[str, str]:
    """The agent's environment: the init's, without what the single file added (its LD_LIBRARY_PATH names
    the bundled glibc, which every program the agent runs would load), and with K8S_WATCH_POLICY
    =watch-disabled: the server elects the first agent of a cluster that does not say so as its
    Kubernetes watcher, and a process agent never watches (only a containerised one does)."""
    env = {k: v for k, v in environ.items() if k not in DROPPED_ENV and not k.startswith(DROPPED_ENV_PREFIXES)}
    env.pop("LD_LIBRARY_PATH", None)
    library_path = host_library_path(environ, frozen)
    if library_path is not None:
        env["LD_LIBRARY_PATH"] = library_path
    env["K8S_WATCH_POLICY"] = "watch-disabled"
    return env


def run_agent(user: str, cap_spec: str, cpu_millicores: int, memory_mib: int, argv: list[str],
              prepared: bool = False, log_dir: Optional[str] = None) -> None:
    """Prepare (unless done already), join the cgroups, drop, exec. Never returns on success."""
    account = _start_checks(user, argv)
    if not prepared:
        prepare(user, cap_spec, cpu_millicores, memory_mib, argv, log_dir=log_dir)
    cap_names = caps.resolve(cap_spec, kernel_version())
    agentcgroups.join(cgroup_layout(), os.getpid())
    env = agent_env(os.environ, frozen=getattr(sys, "frozen", False))
    import prctl

    _remove_own_copy()  # as root (the dir is root's), with every module this start needs imported
    drop_privileges(account.uid, account.gid, cap_names)

    # What the unit's NoNewPrivileges= gives, under any init: nothing the agent execs gains privileges.
    prctl.set_no_new_privs(True)
    log(f"running {argv[0]} as {user} with {','.join(cap_names)}")
    _close_inherited_fds()
    os.execve(argv[0], argv, env)


def _remove_own_copy() -> None:
    """The single file unpacked a private copy for this start (it could not use its cache) and named it:
    nothing is imported from it any more, so it goes now rather than stay in /tmp at every start. Only
    the dir this process runs from."""
    where = os.environ.get("HOSTAGENT_UNPACKED")
    if not where or not getattr(sys, "frozen", False):
        return
    import shutil

    try:
        if os.path.samefile(os.path.join(where, "hostagent"), "/proc/self/exe"):
            shutil.rmtree(where)
    except OSError:
        pass


def cleanup() -> None:
    """After the service stops: on cgroup v2 the agent left the unit's cgroup, so systemd cannot
    reach processes it forked; end whatever is left in its own cgroup."""
    layout = cgroup_layout()
    if layout.mode != "v2":
        return
    for directory in agentcgroups.agent_dirs(layout):
        agentcgroups.kill_all(directory)


def main(argv: list[str]) -> int:
    """`hostagent exec` without typer: it runs at every start of the agent, so it starts fast."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="hostagent exec", description="Start the agent: as root prepare its cgroups and capabilities, "
        "drop to its user, exec it. Use from systemd (the installed unit does), SysV init or supervisord.")
    # Defaults come from install's settings table, read only when a value is left out (the unit
    # passes them all, so an agent start never imports it).
    parser.add_argument("--user", help="user to become (default: as install)")
    parser.add_argument("--caps", help="capability profile or list to keep (default: as install)")
    parser.add_argument("--cpu-millicores", type=int, help="initial CPU limit, for a cgroup dir this start creates; "
                        "the agent then applies its group's (default: as install)")
    parser.add_argument("--memory-mib", type=int, help="initial memory limit, likewise (default: as install)")
    parser.add_argument("--log-dir", help="recreate this log dir for the user if it is missing (not with --prepared)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--prepare-only", action="store_true", help="only the full-root part (ExecStartPre=+)")
    mode.add_argument("--prepared", action="store_true", help="--prepare-only already ran: join, drop, exec")
    mode.add_argument("--cleanup", action="store_true", help="after a stop: end what is left in the v2 cgroup")
    parser.add_argument("agent", nargs=argparse.REMAINDER, help="-- AGENT [ARGS...]")
    args = parser.parse_args(argv)
    agent = args.agent[1:] if args.agent[:1] == ["--"] else args.agent
    for name in ("user", "caps", "cpu_millicores", "memory_mib"):
        if getattr(args, name) is None:
            from hostagent.options import default

            setattr(args, name, default(name))
    try:
        if args.cleanup:
            cleanup()
        elif args.prepare_only:
            prepare(args.user, args.caps, args.cpu_millicores, args.memory_mib, agent, log_dir=args.log_dir)
        else:
            run_agent(args.user, args.caps, args.cpu_millicores, args.memory_mib, agent, prepared=args.prepared,
                      log_dir=args.log_dir)
    except (HostagentError, OSError) as e:
        log(f"error: {e}")
        return 1
    return 0
