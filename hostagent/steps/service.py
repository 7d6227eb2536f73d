"""The systemd service: enabled, (re)started, and proven running as the agent's user."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from hostagent import faults
from hostagent.errors import StepError
from hostagent.facts import accounts
from hostagent.facts.service import journal_excerpt, proc_uid_exe, unit_state
from hostagent.run import run
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

    def _running_as_user(self, state: dict[str, str]) -> bool:
        account = accounts.user(self.user)
        pid = int(state.get("MainPID", "0") or 0)
        if account is None or pid == 0:
            return False
        uid, exe = proc_uid_exe(pid)
        return uid == account.uid and exe == self.binary

    def check(self) -> bool:
        if self.upstream_changed:
            return False  # something it runs with changed: restart it
        state = unit_state(self.name)
        return (state.get("UnitFileState") == "enabled" and state.get("ActiveState") == "active"
                and self._running_as_user(state))

    def drift(self) -> list[str]:
        state = unit_state(self.name)
        problems = []
        if state.get("UnitFileState") != "enabled":
            problems.append(f"{self.name} is {state.get('UnitFileState')}, not enabled")
        if state.get("ActiveState") != "active":
            problems.append(f"{self.name} is {state.get('ActiveState')}/{state.get('SubState')}, not running")
        elif not self._running_as_user(state):
            problems.append(f"{self.name} main process is not {self.binary} running as {self.user}")
        return problems

    def diff(self) -> str:
        return f"+ systemctl enable {self.name} && systemctl restart {self.name}"

    def snapshot(self) -> Record:
        state = unit_state(self.name)
        return {"was_enabled": state.get("UnitFileState") == "enabled", "was_active": state.get("ActiveState") == "active"}

    def apply(self, record: Record) -> None:
        # The unit file step already reloaded systemd; enabling only needs the symlink.
        run(["systemctl", "enable", "--quiet", "--no-reload", self.name])
        faults.point(f"inside:{self.id}")
        run(["systemctl", "restart", self.name])
        self._wait_running()

    def _wait_running(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        state: dict[str, str] = {}
        while time.monotonic() < deadline:
            state = unit_state(self.name)
            if state.get("ActiveState") == "active" and self._running_as_user(state):
                # Confirm that it survived its own start-up work (cgroups, capabilities): the same
                # process, still the user's, after a short settle time; Restart=always would otherwise
                # hide an agent that exits at once behind its next start.
                time.sleep(SETTLE)
                again = unit_state(self.name)
                if (again.get("MainPID") == state.get("MainPID") and again.get("ActiveState") == "active"
                        and again.get("NRestarts") == state.get("NRestarts") and self._running_as_user(again)):
                    return
            if state.get("ActiveState") == "failed" or state.get("SubState") == "auto-restart":
                break
            time.sleep(0.02)
        journal = journal_excerpt(self.name)
        raise StepError(f"{self.name} did not come up running as {self.user} "
                        f"(state {state.get('ActiveState')}/{state.get('SubState')}, result {state.get('Result')})"
                        + (f"\n--- journal ---\n{journal}" if journal else ""))

    def revert(self, record: Record) -> None:
        run(["systemctl", "stop", self.name])
        if not record.get("was_enabled"):
            run(["systemctl", "disable", "--quiet", "--no-reload", self.name])
        if unit_state(self.name).get("ActiveState") == "failed":
            run(["systemctl", "reset-failed", self.name], timeout=30)

    def after_revert(self, record: Record) -> None:
        # Put back a service that was running before we touched it (e.g. a packaged root agent).
        if record.get("was_enabled"):
            run(["systemctl", "enable", "--quiet", self.name])
        if record.get("was_active"):
            run(["systemctl", "start", self.name])
