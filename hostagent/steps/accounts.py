"""The agent's system group and user: created only when absent, removed only if we created them."""
from __future__ import annotations

import os

from hostagent import facts
from hostagent.steps import Step, run


def nologin_shell() -> str:
    for shell in ("/usr/sbin/nologin", "/sbin/nologin"):
        if os.path.exists(shell):
            return shell
    return "/bin/false"


class Group(Step):
    kind = "group"

    @property
    def title(self) -> str:
        return f"system group {self.params['name']}"

    def check(self) -> bool:
        return facts.group_gid(self.params["name"]) is not None

    def diff(self) -> str:
        return f"+ groupadd --system {self.params['name']}"

    def apply(self) -> dict:
        run(["groupadd", "--system", self.params["name"]])
        return {"created": True}

    def revert(self, record: dict) -> None:
        if record.get("created") and self.check():
            run(["groupdel", self.params["name"]])


class User(Step):
    kind = "user"

    @property
    def title(self) -> str:
        return f"system user {self.params['name']} (no login, no home)"

    def check(self) -> bool:
        return facts.user(self.params["name"]) is not None

    def _argv(self) -> list[str]:
        # --no-log-init keeps lastlog/faillog untouched; /nonexistent is Debian's "no home".
        return ["useradd", "--system", "--gid", self.params["group"], "--no-create-home",
                "--home-dir", "/nonexistent", "--shell", nologin_shell(), "--no-log-init",
                "--comment", "DeepFlow agent", self.params["name"]]

    def diff(self) -> str:
        return "+ " + " ".join(self._argv())

    def apply(self) -> dict:
        run(self._argv())
        return {"created": True}

    def revert(self, record: dict) -> None:
        if record.get("created") and self.check():
            run(["userdel", self.params["name"]])
