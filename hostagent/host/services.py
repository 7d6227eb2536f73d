"""Service managers: how a service is defined, enabled, started, stopped and seen on this host's init.

systemd: a unit in /etc/systemd/system, systemctl. OpenRC: an openrc-run script in /etc/init.d whose
supervise-daemon respawns the agent, rc-update and rc-service. SysV init: a respawn line in
/etc/inittab (as DeepFlow's own SLES package does): PID 1 itself restarts the agent after a crash or
the exit 3 of its self-upgrade, which an LSB script with a pidfile cannot do; its action field is the
service's enabled state (respawn / off) and `telinit q` applies it.
"""
from __future__ import annotations

import os
import time
from typing import Any, ClassVar, NamedTuple, Optional

from hostagent.errors import StepError
from hostagent.host import Host, paths

SHOW_PROPERTIES = "ActiveState,SubState,UnitFileState,MainPID,NRestarts,Result,LoadState"
STOP_TIMEOUT = 15.0


class ServiceState(NamedTuple):
    enabled: bool  # starts at boot
    active: bool  # running now
    failed: bool  # given up on (or crashed): waiting longer will not bring it up
    main_pid: int  # 0 when none
    restarts: Optional[int]  # systemd's NRestarts; None where the manager does not count them
    detail: str  # as the manager says it, for messages


class ServiceManager:
    kind: ClassVar[str]
    # Whether hostagent's own sandbox (the unit's Protect*/Private*/SystemCallFilter) exists here.
    sandboxed: ClassVar[bool] = False
    # What log_excerpt quotes.
    log_title: ClassVar[str] = "the agent's log"

    def __init__(self, host: Host) -> None:
        self.host = host

    def definition_path(self, name: str) -> str:
        """The host path of what defines the service (unit, init script, inittab)."""
        raise NotImplementedError

    def reload(self) -> None:
        """Make the manager read changed definitions."""

    def state(self, name: str) -> ServiceState:
        raise NotImplementedError

    def enable(self, name: str) -> None:
        raise NotImplementedError

    def disable(self, name: str) -> None:
        raise NotImplementedError

    def start(self, name: str) -> None:
        raise NotImplementedError

    def stop(self, name: str) -> None:
        raise NotImplementedError

    def restart(self, name: str) -> None:
        raise NotImplementedError

    def reset(self, name: str) -> None:
        """Forget a failed state after a stop (systemd's reset-failed)."""

    def log_excerpt(self, name: str, lines: int = 15) -> str:
        """The service's recent output, for a failed start's message."""
        return ""


def parse_systemctl_show(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class Systemd(ServiceManager):
    kind = "systemd"
    sandboxed = True
    log_title = "journal"

    @staticmethod
    def unit(name: str) -> str:
        return name if name.endswith((".service", ".timer")) else name + ".service"

    def definition_path(self, name: str) -> str:
        return f"{paths.SYSTEMD_UNIT_DIR}/{self.unit(name)}"

    def reload(self) -> None:
        self.host.run(["systemctl", "daemon-reload"])

    def properties(self, name: str) -> dict[str, str]:
        return parse_systemctl_show(self.host.run(["systemctl", "show", self.unit(name),
                                                   f"--property={SHOW_PROPERTIES}"]).stdout)

    def state(self, name: str) -> ServiceState:
        p = self.properties(name)
        active, sub = p.get("ActiveState", ""), p.get("SubState", "")
        restarts = p.get("NRestarts", "")
        return ServiceState(
            enabled=p.get("UnitFileState") == "enabled", active=active == "active",
            failed=active == "failed" or sub == "auto-restart", main_pid=int(p.get("MainPID", "0") or 0),
            restarts=int(restarts) if restarts.isdigit() else None,
            detail=f"{p.get('UnitFileState')}, {active}/{sub}, result {p.get('Result')}")

    def enable(self, name: str) -> None:
        # The definition step already reloaded systemd; enabling only needs the symlink.
        self.host.run(["systemctl", "enable", "--quiet", "--no-reload", self.unit(name)])

    def disable(self, name: str) -> None:
        self.host.run(["systemctl", "disable", "--quiet", "--no-reload", self.unit(name)])

    def start(self, name: str) -> None:
        self.host.run(["systemctl", "start", self.unit(name)])

    def stop(self, name: str) -> None:
        self.host.run(["systemctl", "stop", self.unit(name)])

    def restart(self, name: str) -> None:
        self.host.run(["systemctl", "restart", self.unit(name)])

    def reset(self, name: str) -> None:
        if self.properties(name).get("ActiveState") == "failed":
            self.host.run(["systemctl", "reset-failed", self.unit(name)], timeout=30)

    def log_excerpt(self, name: str, lines: int = 15) -> str:
        return (self.host.output(["journalctl", "-u", self.unit(name), "-n", str(lines), "--no-pager", "-o", "cat"]) or "").strip()


def _children(ppid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(ppid).children())
    except psutil.Error:
        return []


def _cmdline(proc: Any) -> list[str]:
    import psutil

    try:
        return list(proc.cmdline())
    except psutil.Error:
        return []


def _wait_gone(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


class InittabEntry(NamedTuple):
    tag: str
    runlevels: str
    action: str
    process: str

    def line(self) -> str:
        return f"{self.tag}:{self.runlevels}:{self.action}:{self.process}"


def parse_inittab_line(line: str) -> Optional[InittabEntry]:
    if line.lstrip().startswith("#") or line.count(":") < 3:
        return None
    tag, runlevels, action, process = line.split(":", 3)
    return InittabEntry(tag, runlevels, action, process.rstrip("\n"))


# inittab ids are at most 4 characters.
INITTAB_TAGS = {paths.SERVICE: "dfha"}


class SysVInit(ServiceManager):
    kind = "sysvinit"

    def definition_path(self, name: str) -> str:
        return paths.INITTAB

    @staticmethod
    def tag(name: str) -> str:
        try:
            return INITTAB_TAGS[name]
        except KeyError:
            raise StepError(f"{name} has no inittab id; hostagent runs only the agent from inittab") from None

    def _text(self) -> str:
        with open(self.host.path(paths.INITTAB)) as f:
            return f.read()

    def entry(self, name: str) -> Optional[InittabEntry]:
        tag = self.tag(name)
        try:
            text = self._text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            found = parse_inittab_line(line)
            if found and found.tag == tag:
                return found
        return None

    def _set_action(self, name: str, action: str) -> None:
        from hostagent.host import fs

        tag = self.tag(name)
        lines = self._text().splitlines(keepends=True)
        changed = False
        for i, line in enumerate(lines):
            found = parse_inittab_line(line)
            if found and found.tag == tag and found.action != action:
                lines[i] = found._replace(action=action).line() + "\n"
                changed = True
        if not changed:
            if self.entry(name) is None:
                raise StepError(f"{paths.INITTAB} has no {tag}: line for {name}")
            return
        path = self.host.path(paths.INITTAB)
        st = os.lstat(path)
        fs.atomic_write(path, "".join(lines).encode(), st.st_mode & 0o7777, st.st_uid, st.st_gid)

    def reload(self) -> None:
        self.host.run(["telinit", "q"])

    def _argv(self, process: str) -> list[str]:
        """What the entry runs in the end: its command, or the exec line of the script it names."""
        argv = process.split()
        try:
            with open(self.host.path(argv[0])) as f:
                text = f.read()
        except (OSError, UnicodeDecodeError, IndexError):
            return argv
        execs = [line.split()[1:] for line in text.splitlines() if line.startswith("exec ")]
        return execs[-1] if text.startswith("#!") and execs else argv

    def main_pid(self, name: str) -> int:
        """init's child that runs the entry: its script's shell, the launcher it execs, or the agent
        that became (its argv is the tail of the launcher's)."""
        found = self.entry(name)
        if found is None:
            return 0
        script, argv = found.process.split(), self._argv(found.process)
        for child in _children(1):
            cmd = _cmdline(child)
            if cmd and (cmd == argv or argv[-len(cmd):] == cmd or cmd[-len(script):] == script):
                return int(child.pid)
        return 0

    def state(self, name: str) -> ServiceState:
        found = self.entry(name)
        pid = self.main_pid(name)
        action = found.action if found else "missing"
        return ServiceState(enabled=action == "respawn", active=pid != 0, failed=False, main_pid=pid,
                            restarts=None, detail=f"inittab {action}, " + (f"pid {pid}" if pid else "not running"))

    def enable(self, name: str) -> None:
        self._set_action(name, "respawn")

    def disable(self, name: str) -> None:
        if self.entry(name) is not None:  # a line already gone (an admin, a revert cut short) is off
            self._set_action(name, "off")

    def start(self, name: str) -> None:
        self.enable(name)
        self.reload()

    def stop(self, name: str) -> None:
        if self.entry(name) is None:
            return  # without its line init runs nothing of it
        pid = self.main_pid(name)
        self.disable(name)
        self.reload()  # init sends TERM, then KILL after 5 s, to an entry that went off
        _wait_gone(pid)

    def restart(self, name: str) -> None:
        # Off and on again rather than a kill: init counts kills as respawns and stops an entry that
        # respawns 10 times in 2 minutes.
        self.stop(name)
        self.start(name)

    def log_excerpt(self, name: str, lines: int = 15) -> str:
        return _tail(self.host.path(paths.LOG_FILE), lines)


class OpenRC(ServiceManager):
    kind = "openrc"
    RUNLEVEL = "default"

    def definition_path(self, name: str) -> str:
        return f"{paths.INITD_DIR}/{name}"

    def main_pid(self, name: str) -> int:
        """The child of the service's supervise-daemon (its argv[1] is the service name)."""
        import psutil

        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] == "supervise-daemon" and _cmdline(proc)[1:2] == [name]:
                kids = _children(proc.pid)
                if kids:
                    return int(kids[0].pid)
        return 0

    def state(self, name: str) -> ServiceState:
        enabled = os.path.lexists(self.host.path(f"/etc/runlevels/{self.RUNLEVEL}/{name}"))
        status = self.host.run(["rc-service", name, "status"], check=False)
        said = (status.stdout + status.stderr).strip().rsplit(":", 1)[-1].strip()
        pid = self.main_pid(name)
        return ServiceState(enabled=enabled, active=status.returncode == 0 and pid != 0, failed=said == "crashed",
                            main_pid=pid, restarts=None, detail=f"{'enabled' if enabled else 'disabled'}, {said or 'unknown'}")

    def enable(self, name: str) -> None:
        if not os.path.lexists(self.host.path(f"/etc/runlevels/{self.RUNLEVEL}/{name}")):
            self.host.run(["rc-update", "add", name, self.RUNLEVEL])

    def disable(self, name: str) -> None:
        if os.path.lexists(self.host.path(f"/etc/runlevels/{self.RUNLEVEL}/{name}")):
            self.host.run(["rc-update", "del", name, self.RUNLEVEL])

    def start(self, name: str) -> None:
        self.host.run(["rc-service", name, "start"])

    def stop(self, name: str) -> None:
        if not os.path.exists(self.host.path(self.definition_path(name))):
            return  # its script is gone (an admin, a revert cut short): OpenRC cannot run it either
        pid = self.main_pid(name)
        self.host.run(["rc-service", name, "stop"])
        _wait_gone(pid)

    def restart(self, name: str) -> None:
        self.host.run(["rc-service", name, "restart"])

    def reset(self, name: str) -> None:
        # A crashed service stays "crashed" until zapped; stopped is what revert wants.
        if self.state(name).failed:
            self.host.run(["rc-service", name, "zap"])

    def log_excerpt(self, name: str, lines: int = 15) -> str:
        return _tail(self.host.path(paths.LOG_FILE), lines)


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


class Unsupported(ServiceManager):
    kind = "unknown"

    def definition_path(self, name: str) -> str:
        raise StepError("no supported service manager on this host (systemd, SysV init or OpenRC)")


MANAGERS: dict[str, type[ServiceManager]] = {m.kind: m for m in (Systemd, SysVInit, OpenRC)}


def manager_for(host: Host) -> ServiceManager:
    return MANAGERS.get(host.init, Unsupported)(host)
