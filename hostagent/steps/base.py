"""A step: one reversible change with check / snapshot / apply / revert.

Its parameters are typed dataclass fields, JSON-able, so the manifest can rebuild the step for
`status` and `uninstall`. snapshot() records what is there before anything changes; the engine
writes that record to the manifest (write-ahead) before apply(record) makes the change; revert(record)
puts exactly that back whether apply ran fully, partly or not at all, so a crash at any point is
recoverable.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

Record = dict[str, Any]


@dataclass
class Step:
    kind: ClassVar[str]
    # True for steps that hold the user's data (logs): uninstall --keep-logs leaves them in place.
    holds_data: ClassVar[bool] = False
    # Set by the engine: did an earlier step change something in this run?
    upstream_changed: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.key}"

    @property
    def key(self) -> str:
        return str(getattr(self, "path", None) or getattr(self, "name", None) or "")

    @property
    def title(self) -> str:
        return self.id

    def check(self) -> bool:
        """True when the host is already as this step wants it (apply would be a no-op)."""
        raise NotImplementedError

    def diff(self) -> Optional[str]:
        """What apply would change, for --dry-run; None when there is nothing textual to show."""
        return None

    def snapshot(self) -> Record:
        """What is there now, enough for revert() to put it back. Changes nothing on the host
        (a step may keep a backup in hostagent's own state dir)."""
        raise NotImplementedError

    def apply(self, record: Record) -> None:
        raise NotImplementedError

    def keep_first(self, first: Record, now: Record) -> Record:
        """The record to keep when a re-run changes an installed step again: the first install's
        (what the host had before hostagent), updated with what this run makes its own."""
        return first

    def revert(self, record: Record) -> Optional[str]:
        """Undo apply(); also correct after a partial apply or none (idempotent). Returns a note
        for the user when something was kept rather than undone."""
        raise NotImplementedError

    def keep(self, record: Record) -> Optional[str]:
        """uninstall --keep-logs on a step that holds data: left in place, made safe to outlive
        hostagent's user. Returns a note for the user."""
        return None

    def after_revert(self, record: Record) -> None:
        """Runs once every step has been reverted (e.g. to restart a service that was running)."""

    def drift(self) -> list[str]:
        return [] if self.check() else [f"{self.title}: not as installed"]

    def supersedes(self, other: Step) -> bool:
        """True when this step takes the place of an installed one the plan no longer has (an earlier
        hostagent's way of doing the same thing): install then hands that one over first, not refuses."""
        return False

    def hand_over(self, record: Record) -> Optional[str]:
        """Undo this step for the one that supersedes it (by default: revert). Returns a note."""
        return self.revert(record)

    def notes(self, record: Record) -> list[str]:
        """For `status`: what changed since install that is not drift (e.g. a package upgrade)."""
        return []

    def restored_at_start(self, record: Record) -> bool:
        """True while something else changed this step's path since install and the agent's next start
        puts it back: `status` then reports no drift for any step on that path."""
        return False

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "params": self.params()}
