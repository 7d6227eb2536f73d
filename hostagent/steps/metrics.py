"""install --metrics-textfile: the timer that runs `hostagent doctor --prometheus` every minute, and the
textfile it writes (not written by install itself, but removed by uninstall like everything else)."""
from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import Optional

from hostagent import host
from hostagent.facts.files import FileState, file_state, lstat_or_none
from hostagent.host import fs
from hostagent.steps.base import Record, Step


@dataclass
class Timer(Step):
    """A systemd timer enabled and started (its definition is a ServiceDefinition before it)."""

    kind = "timer"
    name: str  # the .timer unit
    service: str  # the .service it runs: stopped with it on revert

    @property
    def title(self) -> str:
        return f"timer {self.name} enabled and started"

    def check(self) -> bool:
        state = host.current().services.state(self.name)
        return state.enabled and state.active and not self.upstream_changed

    def drift(self) -> list[str]:
        state = host.current().services.state(self.name)
        return [] if state.enabled and state.active else [f"{self.name} is not enabled and active ({state.detail})"]

    def diff(self) -> str:
        return f"+ systemd: enable {self.name}, (re)start it"

    def snapshot(self) -> Record:
        state = host.current().services.state(self.name)
        return {"was_enabled": state.enabled, "was_active": state.active}

    def apply(self, record: Record) -> None:
        manager = host.current().services
        manager.enable(self.name)
        manager.restart(self.name)

    def revert(self, record: Record) -> Optional[str]:
        manager = host.current().services
        for unit in (self.name, self.service):  # a run in progress too, before its definition goes
            manager.stop(unit)
            manager.reset(unit)
        if not record.get("was_enabled"):
            manager.disable(self.name)
        return None


@dataclass
class Textfile(Step):
    """The metrics file the timer keeps writing. Apply writes nothing (the timer does); revert removes
    it, or puts back what was there before install."""

    kind = "textfile"
    path: str

    @property
    def title(self) -> str:
        return f"metrics textfile {self.path} (written by the timer)"

    def check(self) -> bool:
        st = lstat_or_none(self.path)
        return st is not None and stat.S_ISREG(st.st_mode)

    def drift(self) -> list[str]:
        return []  # a missing or stale file is the alert's to see (hostagent_doctor_last_run_timestamp_seconds)

    def diff(self) -> str:
        return f"+ {self.path}, written by the timer"

    def snapshot(self) -> Record:
        before = file_state(self.path)
        return {"before": before.to_dict() if before else None}

    def apply(self, record: Record) -> None:
        pass

    def revert(self, record: Record) -> Optional[str]:
        if record.get("before"):
            fs.restore(FileState(**record["before"]), self.path)
        else:
            fs.remove_file(self.path)
        return None
