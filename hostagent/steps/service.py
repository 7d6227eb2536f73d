"""The service: its inittab line where SysV init runs it, and the service enabled, (re)started and proven
running as the agent's user, under whichever manager the host has (hostagent.host.services)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

from hostagent import faults, host
from hostagent.errors import StepError
from hostagent.facts import accounts
from hostagent.facts.files import read_nofollow
from hostagent.facts.service import proc_uid_exe
from hostagent.host import fs
from hostagent.host.services import InittabEntry, ServiceState, parse_inittab_line
from hostagent.steps.base import Record, Step

START_TIMEOUT = float(os.environ.get("HOSTAGENT_START_TIMEOUT", "30"))
SETTLE = 0.3  # seconds a started agent must keep running before its start counts


@dataclass
class Service(Step):
    kind = "service"
    name: str
    user: str
    binary: str

    @property
    def title(self) -> str:
        return f"service {self.name} enabled and running as {self.user}"

    @property
    def _manager(self):  # type: ignore[no-untyped-def]
        return host.current().services

    def _running_as_user(self, state: ServiceState) -> bool:
        account = accounts.user(self.user)
        if account is None or state.main_pid == 0:
            return False
        uid, exe = proc_uid_exe(state.main_pid)
        return uid == account.uid and exe == self.binary

    def check(self) -> bool:
        if self.upstream_changed:
            return False  # something it runs with changed: restart it
        state = self._manager.state(self.name)
        return state.enabled and state.active and self._running_as_user(state)

    def drift(self) -> list[str]:
        state = self._manager.state(self.name)
        problems = []
        if not state.enabled:
            problems.append(f"{self.name} is not enabled ({state.detail})")
        if not state.active:
            problems.append(f"{self.name} is not running ({state.detail})")
        elif not self._running_as_user(state):
            problems.append(f"{self.name} main process is not {self.binary} running as {self.user}")
        return problems

    def diff(self) -> str:
        return f"+ {self._manager.kind}: enable {self.name}, (re)start it"

    def snapshot(self) -> Record:
        state = self._manager.state(self.name)
        return {"was_enabled": state.enabled, "was_active": state.active}

    def apply(self, record: Record) -> None:
        manager = self._manager
        manager.enable(self.name)
        faults.point(f"inside:{self.id}")
        manager.restart(self.name)
        self._wait_running()

    def _wait_running(self) -> None:
        manager = self._manager
        deadline = time.monotonic() + START_TIMEOUT
        state = manager.state(self.name)
        while time.monotonic() < deadline:
            state = manager.state(self.name)
            if state.active and self._running_as_user(state):
                # Confirm that it survived its own start-up work (cgroups, capabilities): the same
                # process, still the user's, after a short settle time; a respawning manager would
                # otherwise hide an agent that exits at once behind its next start.
                time.sleep(SETTLE)
                again = manager.state(self.name)
                if (again.main_pid == state.main_pid and again.active and again.restarts == state.restarts
                        and self._running_as_user(again)):
                    return
            if state.failed:
                break
            time.sleep(0.02)
        excerpt = manager.log_excerpt(self.name)
        raise StepError(f"{self.name} did not come up running as {self.user} ({state.detail})"
                        + (f"\n--- {manager.log_title} ---\n{excerpt}" if excerpt else ""))

    def _gone(self) -> bool:
        """Its unit went with the package that owned it (removed while hostagent managed the agent):
        nothing is left to stop, disable, enable or start."""
        properties = getattr(self._manager, "properties", None)
        return properties is not None and properties(self.name).get("LoadState") == "not-found"

    def revert(self, record: Record) -> None:
        manager = self._manager
        if self._gone():
            return
        manager.stop(self.name)
        if not record.get("was_enabled"):
            manager.disable(self.name)
        manager.reset(self.name)

    def after_revert(self, record: Record) -> None:
        # Put back a service that was running before we touched it (e.g. a packaged root agent).
        manager = self._manager
        if self._gone():
            return
        if record.get("was_enabled"):
            manager.enable(self.name)
        if record.get("was_active"):
            manager.start(self.name)


@dataclass
class InittabLine(Step):
    """The agent's respawn line in /etc/inittab (SysV init). Written "off": the service step turns it
    on. Revert removes the line and leaves the rest of the file as it is then (an admin's edits stay)."""

    kind = "inittab"
    path: str
    tag: str
    runlevels: str
    process: str

    @property
    def key(self) -> str:
        return f"{self.path}:{self.tag}"

    @property
    def title(self) -> str:
        return f"{self.path} line {self.tag}: {self.process}"

    def _lines(self) -> list[str]:
        return (read_nofollow(self.path) or b"").decode().splitlines(keepends=True)

    def _ours(self) -> Optional[InittabEntry]:
        for line in self._lines():
            found = parse_inittab_line(line)
            if found and found.tag == self.tag:
                return found
        return None

    def check(self) -> bool:
        found = self._ours()
        return found is not None and (found.runlevels, found.process) == (self.runlevels, self.process)

    def diff(self) -> str:
        found = self._ours()
        want = InittabEntry(self.tag, self.runlevels, found.action if found else "off", self.process).line()
        return (f"- {found.line()}\n" if found else "") + f"+ {want}"

    def snapshot(self) -> Record:
        found = self._ours()
        return {"before": found.line() if found else None}

    def _write(self, lines: list[str]) -> None:
        st = os.lstat(self.path)
        fs.atomic_write(self.path, "".join(lines).encode(), st.st_mode & 0o7777, st.st_uid, st.st_gid)

    def apply(self, record: Record) -> None:
        lines, done = self._lines(), False
        for i, line in enumerate(lines):
            found = parse_inittab_line(line)
            if found and found.tag == self.tag:
                lines[i] = found._replace(runlevels=self.runlevels, process=self.process).line() + "\n"
                done = True
        if not done:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append("# Installed by hostagent; `hostagent uninstall` removes it.\n")
            lines.append(InittabEntry(self.tag, self.runlevels, "off", self.process).line() + "\n")
        self._write(lines)
        faults.point(f"inside:{self.id}")
        host.current().services.reload()

    def revert(self, record: Record) -> None:
        before = record.get("before")
        lines, out = self._lines(), []
        for line in lines:
            found = parse_inittab_line(line)
            if found and found.tag == self.tag:
                if before:
                    out.append(before + "\n")
                continue
            if line.startswith("# Installed by hostagent") and not before:
                continue
            out.append(line)
        if out != lines:
            self._write(out)
            host.current().services.reload()
