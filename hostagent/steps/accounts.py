"""The agent's system group and user: created only when absent, removed only if we created them."""
from __future__ import annotations

from dataclasses import dataclass

from hostagent import host
from hostagent.facts import accounts
from hostagent.steps.base import Record, Step


def run(argv: list[str]) -> None:
    host.current().run(argv)


@dataclass
class Group(Step):
    kind = "group"
    name: str

    @property
    def title(self) -> str:
        return f"system group {self.name}"

    def check(self) -> bool:
        return accounts.group_gid(self.name) is not None

    def diff(self) -> str:
        return f"+ groupadd --system {self.name}"

    def snapshot(self) -> Record:
        return {"created": not self.check()}

    def apply(self, record: Record) -> None:
        run(["groupadd", "--system", self.name])

    def revert(self, record: Record) -> None:
        if record.get("created") and self.check():
            run(["groupdel", self.name])


@dataclass
class User(Step):
    kind = "user"
    name: str
    group: str

    @property
    def title(self) -> str:
        return f"system user {self.name} (no login, no home)"

    def check(self) -> bool:
        return accounts.user(self.name) is not None

    def _argv(self) -> list[str]:
        # --no-log-init keeps lastlog/faillog untouched; /nonexistent is Debian's "no home".
        return ["useradd", "--system", "--gid", self.group, "--no-create-home",
                "--home-dir", "/nonexistent", "--shell", accounts.nologin_shell(), "--no-log-init",
                "--comment", "DeepFlow agent", self.name]

    def diff(self) -> str:
        return "+ " + " ".join(self._argv())

    def snapshot(self) -> Record:
        return {"created": not self.check()}

    def apply(self, record: Record) -> None:
        run(self._argv())

    def revert(self, record: Record) -> None:
        if record.get("created") and self.check():
            # userdel may also drop a same-named primary group; that group is ours (preflight refuses
            # an existing group for a new user), and the group step's revert then finds it gone.
            run(["userdel", self.name])
