"""The systemd service: enabled, (re)started, and proven running as the agent's user."""
from __future__ import annotations

import os
import time
from typing import Optional

from hostagent import facts
from hostagent.errors import StepError
from hostagent.steps import Step, run

START_TIMEOUT = float(os.environ.get("HOSTAGENT_START_TIMEOUT", "30"))


def unit_state(unit: str) -> dict:
    proc = run(["systemctl", "show", unit, "--property=ActiveState,SubState,UnitFileState,MainPID,NRestarts,Result"])
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def journal_excerpt(unit: str, lines: int = 15) -> str:
    try:
        return run(["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat"]).stdout.strip()
    except StepError:
        return ""


def _proc_uid_exe(pid: int) -> tuple[Optional[int], Optional[str]]:
    try:
        with open(f"/proc/{pid}/status") as f:
            uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        exe = os.readlink(f"/proc/{pid}/exe")
    except (OSError, StopIteration):
        return None, None
    return uid, exe.replace(" (deleted)", "")


class Service(Step):
    kind = "service"

    @property
    def title(self) -> str:
        return f"service {self.params['name']} enabled and running as {self.params['user']}"

    def _running_as_user(self, state: dict) -> bool:
        account = facts.user(self.params["user"])
        pid = int(state.get("MainPID", "0") or 0)
        if account is None or pid == 0:
            return False
        uid, exe = _proc_uid_exe(pid)
        return uid == account.uid and exe == self.params["binary"]

    def check(self) -> bool:
        if self.upstream_changed:
            return False  # something it runs with changed: restart it
        state = unit_state(self.params["name"])
        return (state.get("UnitFileState") == "enabled" and state.get("ActiveState") == "active"
                and self._running_as_user(state))

    def drift(self) -> list[str]:
        state = unit_state(self.params["name"])
        problems = []
        if state.get("UnitFileState") != "enabled":
            problems.append(f"{self.params['name']} is {state.get('UnitFileState')}, not enabled")
        if state.get("ActiveState") != "active":
            problems.append(f"{self.params['name']} is {state.get('ActiveState')}/{state.get('SubState')}, not running")
        elif not self._running_as_user(state):
            problems.append(f"{self.params['name']} main process is not {self.params['binary']} running as {self.params['user']}")
        return problems

    def diff(self) -> str:
        return f"+ systemctl enable {self.params['name']} && systemctl restart {self.params['name']}"

    def apply(self) -> dict:
        name = self.params["name"]
        state = unit_state(name)
        record = {"was_enabled": state.get("UnitFileState") == "enabled", "was_active": state.get("ActiveState") == "active"}
        # The unit file step already reloaded systemd; enabling only needs the symlink.
        try:
            run(["systemctl", "enable", "--quiet", "--no-reload", name])
            run(["systemctl", "restart", name])
            self._wait_running(name)
        except Exception:
            # A failed apply has no record for the engine to revert with: undo our part here.
            self.revert(record)
            raise
        return record

    def _wait_running(self, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        state: dict = {}
        while time.monotonic() < deadline:
            state = unit_state(name)
            if state.get("ActiveState") == "active" and self._running_as_user(state):
                # Confirm once more that it survived its own start-up work (cgroups, capabilities).
                again = unit_state(name)
                if again.get("MainPID") == state.get("MainPID") and again.get("ActiveState") == "active":
                    return
            if state.get("ActiveState") == "failed" or state.get("SubState") == "auto-restart":
                break
            time.sleep(0.02)
        journal = journal_excerpt(name)
        raise StepError(f"{name} did not come up running as {self.params['user']} "
                        f"(state {state.get('ActiveState')}/{state.get('SubState')}, result {state.get('Result')})"
                        + (f"\n--- journal ---\n{journal}" if journal else ""))

    def revert(self, record: dict) -> None:
        name = self.params["name"]
        run(["systemctl", "stop", name])
        if not record.get("was_enabled"):
            run(["systemctl", "disable", "--quiet", "--no-reload", name])
        if unit_state(name).get("ActiveState") == "failed":
            run(["systemctl", "reset-failed", name], timeout=30)

    def after_revert(self, record: dict) -> None:
        # Put back a service that was running before we touched it (e.g. a packaged root agent).
        if record.get("was_enabled"):
            run(["systemctl", "enable", "--quiet", self.params["name"]])
        if record.get("was_active"):
            run(["systemctl", "start", self.params["name"]])
