"""The agent's cgroup dirs with limits, owned by its user (see hostagent.cgroups)."""
from __future__ import annotations

import os

from hostagent import cgroups, facts
from hostagent.errors import StepError
from hostagent.steps import Step


class AgentCgroups(Step):
    kind = "cgroups"

    @property
    def key(self) -> str:
        return self.params["mode"]

    @property
    def layout(self) -> facts.CgroupLayout:
        p = self.params
        return facts.CgroupLayout(p["mode"], p.get("cpu_mount"), p.get("memory_mount"))

    @property
    def limits(self) -> cgroups.Limits:
        return cgroups.Limits(self.params["cpu_millicores"], self.params["memory_mib"])

    @property
    def title(self) -> str:
        dirs = ", ".join(self.layout.agent_dirs())
        return f"cgroup ({self.params['mode']}) {dirs} for {self.params['user']}, {self.params['cpu_millicores']}m CPU, {self.params['memory_mib']} MiB"

    def _ids(self) -> tuple[int, int]:
        account = facts.user(self.params["user"])
        if account is None:
            raise StepError(f"user {self.params['user']} does not exist")
        return account.uid, account.gid

    def check(self) -> bool:
        account = facts.user(self.params["user"])
        return account is not None and not cgroups.drift(self.layout, self.limits, account.uid, account.gid)

    def drift(self) -> list[str]:
        account = facts.user(self.params["user"])
        if account is None:
            return [f"user {self.params['user']} is missing"]
        return cgroups.drift(self.layout, self.limits, account.uid, account.gid)

    def diff(self) -> str:
        if facts.user(self.params["user"]) is None:
            return "\n".join(f"+ {d} owned by {self.params['user']}" for d in self.layout.agent_dirs())
        return "\n".join(f"~ {problem}" for problem in self.drift())

    def apply(self) -> dict:
        layout = self.layout
        before = {}
        for d in layout.agent_dirs():
            if os.path.isdir(d):
                st = os.lstat(d)
                before[d] = [st.st_uid, st.st_gid]
        enabled_before = cgroups.enabled_v2_controllers() if layout.mode == "v2" else set()
        uid, gid = self._ids()
        try:
            created = cgroups.ensure(layout, self.limits, uid, gid)
        except OSError as e:
            raise StepError(f"cannot prepare cgroup dirs: {e}") from None
        turned_on = sorted({"cpu", "memory"} - enabled_before) if layout.mode == "v2" else []
        return {"created": created, "owners_before": before, "controllers_enabled": turned_on}

    def revert(self, record: dict) -> None:
        for d in self.layout.agent_dirs():
            if d in record.get("owners_before", {}):
                uid, gid = record["owners_before"][d]
                if os.path.isdir(d):
                    os.chown(d, uid, gid)
                    for name in os.listdir(d):
                        path = os.path.join(d, name)
                        if os.path.isfile(path):
                            os.chown(path, uid, gid)
            else:
                # Created by us, or recreated by the launcher after a reboot: remove once empty.
                try:
                    cgroups.remove(d)
                except OSError as e:
                    raise StepError(str(e)) from None
        for controller in record.get("controllers_enabled", []):
            try:
                with open(f"/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
                    f.write(f"-{controller}")
            except OSError:
                pass  # still in use by other cgroups (systemd enables it anyway); leaving it on is harmless
