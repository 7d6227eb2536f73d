"""The agent's cgroup dirs with limits, owned by its user (see hostagent.agentcgroups)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from hostagent import agentcgroups
from hostagent.errors import StepError
from hostagent.facts import accounts
from hostagent.facts.cgroups import CgroupLayout, enabled_v2_controllers
from hostagent.steps.base import Record, Step


@dataclass
class AgentCgroups(Step):
    kind = "cgroups"
    mode: str
    cpu_mount: Optional[str]
    memory_mount: Optional[str]
    user: str
    cpu_millicores: int
    memory_mib: int

    @property
    def key(self) -> str:
        return self.mode

    @property
    def layout(self) -> CgroupLayout:
        return CgroupLayout(self.mode, self.cpu_mount, self.memory_mount)

    @property
    def dirs(self) -> list[str]:
        return agentcgroups.agent_dirs(self.layout)

    @property
    def limits(self) -> agentcgroups.Limits:
        return agentcgroups.Limits(self.cpu_millicores, self.memory_mib)

    @property
    def title(self) -> str:
        return (f"cgroup ({self.mode}) {', '.join(self.dirs)} for {self.user}, "
                f"{self.cpu_millicores}m CPU, {self.memory_mib} MiB until the agent's group config")

    def _ids(self) -> tuple[int, int]:
        account = accounts.user(self.user)
        if account is None:
            raise StepError(f"user {self.user} does not exist")
        return account.uid, account.gid

    def check(self) -> bool:
        account = accounts.user(self.user)
        return account is not None and not agentcgroups.drift(self.layout, self.limits, account.uid, account.gid)

    def drift(self) -> list[str]:
        account = accounts.user(self.user)
        if account is None:
            return [f"user {self.user} is missing"]
        return agentcgroups.drift(self.layout, self.limits, account.uid, account.gid)

    def diff(self) -> str:
        if accounts.user(self.user) is None:
            return "\n".join(f"+ {d} owned by {self.user}" for d in self.dirs)
        return "\n".join(f"~ {problem}" for problem in self.drift())

    def snapshot(self) -> Record:
        before: dict[str, list[int]] = {}
        limits: dict[str, dict[str, str]] = {}
        for d in self.dirs:
            if os.path.isdir(d):
                st = os.lstat(d)
                before[d] = [st.st_uid, st.st_gid]
                limits[d] = agentcgroups.read_limits(d, self.layout)
        v2 = self.mode == "v2"
        turned_on = sorted({"cpu", "memory"} - enabled_v2_controllers()) if v2 else []
        return {"owners_before": before, "limits_before": limits, "controllers_enabled": turned_on}

    def apply(self, record: Record) -> None:
        uid, gid = self._ids()
        try:
            agentcgroups.ensure(self.layout, self.limits, uid, gid)
        except OSError as e:
            raise StepError(f"cannot prepare cgroup dirs: {e}") from None

    def revert(self, record: Record) -> None:
        for d in self.dirs:
            if d in record.get("owners_before", {}):
                uid, gid = record["owners_before"][d]
                if os.path.isdir(d):
                    agentcgroups.write_limits(d, record.get("limits_before", {}).get(d, {}))
                    os.chown(d, uid, gid)
                    for name in os.listdir(d):
                        path = os.path.join(d, name)
                        if os.path.isfile(path):
                            os.chown(path, uid, gid)
            else:
                # Created by us, or recreated by the launcher after a reboot: remove once empty.
                try:
                    agentcgroups.remove(d)
                except OSError as e:
                    raise StepError(str(e)) from None
        for controller in record.get("controllers_enabled", []):
            agentcgroups.disable_v2_controller(controller)
