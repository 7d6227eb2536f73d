"""A host under a temp root, for the engine and the steps without root: its passwd and group files name
every account after whoever runs the tests (so chown to "root" or "deepflow" is a chown to oneself,
which needs no privilege), file capabilities live in a user xattr, and a recording runner plays the
host's commands (useradd & co. edit the files; systemctl and telinit keep a service table).
The real files, modes, owners, xattrs and the manifest are all real; only PID 1 is played."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from hostagent.errors import StepError
from hostagent.host import Host

DIRS = ("etc/systemd/system", "etc/init.d", "etc/runlevels/default", "usr/sbin", "var/lib", "var/log", "run",
        "sys/fs/cgroup/cpu", "sys/fs/cgroup/memory", "usr/sbin")


@dataclass
class Unit:
    enabled: bool = False
    active: bool = False
    pid: int = 0
    restarts: int = 0


@dataclass
class RecordingRunner:
    root: Path
    calls: list[list[str]] = field(default_factory=list)
    units: dict[str, Unit] = field(default_factory=dict)
    # command line prefix → message: such a command fails (a broken tool on the host).
    failing: dict[str, str] = field(default_factory=dict)
    # unit → argv that a start runs for real (e.g. the installed agent binary, a copy of sleep); a
    # unit without one reports this test process as its main pid.
    exec_for: dict[str, list[str]] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # host path → (dpkg package, sha256 of the package's content there): see own().
    packages: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __call__(self, argv: Sequence[str], timeout: Optional[float] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        line = " ".join(argv)
        message = next((m for prefix, m in self.failing.items() if line.startswith(prefix)), None)
        if message is not None:
            if check:
                raise StepError(f"{line} failed (1): {message}")
            return subprocess.CompletedProcess(argv, 1, "", message)
        out = getattr(self, "_" + argv[0].replace("-", "_"), self._unknown)(argv[1:])
        return subprocess.CompletedProcess(argv, 0, out or "", "")

    def commands(self, name: str) -> list[list[str]]:
        return [c for c in self.calls if c[0] == name]

    def _unknown(self, args: list[str]) -> str:
        raise AssertionError(f"the fake host does not know this command: {args}")

    # accounts -----------------------------------------------------------------------------
    def _db(self, name: str) -> Path:
        return self.root / "etc" / name

    def _edit(self, name: str, keep, add: Optional[str] = None) -> None:
        lines = [line for line in self._db(name).read_text().splitlines() if keep(line)]
        self._db(name).write_text("".join(line + "\n" for line in lines + ([add] if add else [])))

    def _groupadd(self, args: list[str]) -> None:
        self._edit("group", lambda line: True, f"{args[-1]}:x:{os.getgid()}:")

    def _useradd(self, args: list[str]) -> None:
        shell = args[args.index("--shell") + 1]
        self._edit("passwd", lambda line: True, f"{args[-1]}:x:{os.getuid()}:{os.getgid()}:DeepFlow agent:/nonexistent:{shell}")

    def _userdel(self, args: list[str]) -> None:
        self._edit("passwd", lambda line: not line.startswith(args[-1] + ":"))

    def _groupdel(self, args: list[str]) -> None:
        self._edit("group", lambda line: not line.startswith(args[-1] + ":"))

    # dpkg ---------------------------------------------------------------------------------
    def own(self, path: str, package: str) -> None:
        """A dpkg package owns the host's path with the content there now (and the host has dpkg)."""
        for tool in ("dpkg", "dpkg-query"):
            (self.root / "usr/bin").mkdir(parents=True, exist_ok=True)
            (self.root / "usr/bin" / tool).touch()
        self.packages[path] = (package, self._sha256(path))

    def _sha256(self, path: str) -> str:
        return hashlib.sha256((self.root / path.lstrip("/")).read_bytes()).hexdigest()

    def _dpkg_query(self, args: list[str]) -> str:
        if args[-1] not in self.packages:
            raise StepError(f"dpkg-query: no path found matching pattern {args[-1]}")
        return f"{self.packages[args[-1]][0]}: {args[-1]}\n"

    def _dpkg(self, args: list[str]) -> str:
        assert args[0] == "--verify"
        return "".join(f"??5?????? {path}\n" for path, (package, digest) in self.packages.items()
                       if package == args[1] and self._sha256(path) != digest)

    # systemd ------------------------------------------------------------------------------
    def _systemctl(self, args: list[str]) -> str:
        verb, name = args[0], next((a for a in args[1:] if not a.startswith("-")), "")
        if verb == "show" and not name:  # the manager's own properties (a Debian 12 host's defaults)
            return "DefaultLimitCORE=infinity\nDefaultLimitCORESoft=0\n"
        unit = self.units.setdefault(name, Unit())
        if verb == "show":
            return (f"ActiveState={'active' if unit.active else 'inactive'}\nSubState={'running' if unit.active else 'dead'}\n"
                    f"UnitFileState={'enabled' if unit.enabled else 'disabled'}\nMainPID={unit.pid}\n"
                    f"NRestarts={unit.restarts}\nResult=success\n")
        if verb in ("enable", "disable"):
            unit.enabled = verb == "enable"
        elif verb in ("start", "restart"):
            self._end(name)
            unit.active, unit.pid = True, self._spawn(name)
        elif verb == "stop":
            self._end(name)
            unit.active, unit.pid = False, 0
        return ""

    def _spawn(self, name: str) -> int:
        if name not in self.exec_for:
            return os.getpid()
        proc = subprocess.Popen(self.exec_for[name], stdin=subprocess.DEVNULL)
        self.processes[name] = proc
        return proc.pid

    def _end(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        for name in list(self.processes):
            self._end(name)

    def _journalctl(self, args: list[str]) -> str:
        return "journal line\n"

    def _telinit(self, args: list[str]) -> str:
        return ""


def make_host(root: Path, init: str = "systemd") -> tuple[Host, RecordingRunner]:
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    uid, gid = os.getuid(), os.getgid()
    (root / "etc/passwd").write_text(f"root:x:{uid}:{gid}:root:/root:/bin/bash\n")
    (root / "etc/group").write_text(f"root:x:{gid}:\n")
    runner = RecordingRunner(root)
    return Host(str(root), runner=runner, init=init, caps_xattr="user.hostagent.test-capability"), runner


BINARY = os.path.realpath(sys.executable)  # what the fake service manager's main pid runs
