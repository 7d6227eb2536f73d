"""The seam between hostagent and the machine it changes.

Facts, steps and the engine reach the host only through the current Host: where its filesystem is
(root), how commands run there (runner), which xattr holds file capabilities, and which service
manager runs its services (systemd, SysV init, OpenRC). A run uses the machine itself; unit tests
use a temp root and a recording runner (`using(Host(...))`), so they need no root.
"""
from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Iterator, Optional, Protocol, Sequence

from hostagent.host import run as run_mod

if TYPE_CHECKING:
    from hostagent.host.services import ServiceManager

CAPS_XATTR = "security.capability"


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: Optional[float] = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]: ...


class Host:
    def __init__(self, root: str = "/", runner: Optional[Runner] = None, init: Optional[str] = None,
                 caps_xattr: str = CAPS_XATTR) -> None:
        self.root = os.path.abspath(root)
        self.runner: Runner = runner or run_mod.run
        self.caps_xattr = caps_xattr
        self._init = init
        self._services: Optional[ServiceManager] = None

    @property
    def local(self) -> bool:
        """The machine this process runs on, as it is (not a tree under a temp root)."""
        return self.root == "/"

    def path(self, logical: str) -> str:
        """Where a path of the host (/etc/...) is for this process."""
        return logical if self.local else self.root + logical

    def logical(self, path: str) -> str:
        """The host's own name (/etc/...) for a path of this process: the inverse of path()."""
        if self.local:
            return path
        if path != self.root and not path.startswith(self.root + "/"):
            raise ValueError(f"{path} is not under this host's root {self.root}")
        return path[len(self.root):] or "/"

    def run(self, argv: Sequence[str], timeout: Optional[float] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.runner(argv, timeout=timeout, check=check)

    def output(self, argv: Sequence[str], timeout: float = 10) -> Optional[str]:
        """stdout of a read-only query, or None when the command is missing, fails or hangs (facts)."""
        from hostagent.errors import StepError

        try:
            return self.run(argv, timeout=timeout).stdout
        except StepError:
            return None

    @property
    def init(self) -> str:
        """systemd | sysvinit | openrc | unknown: what runs services here (read from PID 1 and the host's files)."""
        if self._init is None:
            from hostagent.facts.host import init_system

            self._init = init_system(self)
        return self._init

    @property
    def services(self) -> ServiceManager:
        if self._services is None:
            from hostagent.host.services import manager_for

            self._services = manager_for(self)
        return self._services


MACHINE = Host()  # the machine this process runs on
_current: ContextVar[Optional[Host]] = ContextVar("hostagent_host", default=None)


def current() -> Host:
    return _current.get() or MACHINE


@contextmanager
def using(host: Host) -> Iterator[Host]:
    """Make host the one every fact, step and the engine reach, for the duration."""
    token = _current.set(host)
    try:
        yield host
    finally:
        _current.reset(token)
