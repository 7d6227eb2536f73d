"""Steps: each is one reversible change with check / apply / revert.

A step is built from JSON-able params, so the manifest can rebuild it for `status` and `uninstall`.
apply() returns a record of what was there before; revert(record) puts exactly that back.
"""
from __future__ import annotations

import subprocess
from typing import Any, ClassVar, Optional

from hostagent.errors import StepError

KINDS: dict[str, type["Step"]] = {}


class Step:
    kind: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self.params = params
        # Set by the runner: did an earlier step change something in this run?
        self.upstream_changed = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "kind" in cls.__dict__:
            KINDS[cls.kind] = cls

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.key}"

    @property
    def key(self) -> str:
        return str(self.params.get("path") or self.params.get("name") or "")

    @property
    def title(self) -> str:
        return self.id

    def check(self) -> bool:
        """True when the host is already as this step wants it (apply would be a no-op)."""
        raise NotImplementedError

    def diff(self) -> Optional[str]:
        """What apply would change, for --dry-run; None when there is nothing textual to show."""
        return None

    def apply(self) -> dict:
        raise NotImplementedError

    def revert(self, record: dict) -> None:
        raise NotImplementedError

    def after_revert(self, record: dict) -> None:
        """Runs once every step has been reverted (e.g. to restart a service that was running)."""

    def drift(self) -> list[str]:
        return [] if self.check() else [f"{self.title}: not as installed"]

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "params": self.params}


def from_dict(entry: dict) -> Step:
    return KINDS[entry["kind"]](**entry["params"])


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a host command from an argv list (never a shell string); raise StepError on failure."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise StepError(f"{argv[0]} not found on this host") from None
    except subprocess.TimeoutExpired:
        raise StepError(f"{' '.join(argv)} timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise StepError(f"{' '.join(argv)} failed ({proc.returncode}): {msg[-1] if msg else ''}")
    return proc


# Register the step kinds.
from hostagent.steps import accounts, cgroup, files, service  # noqa: E402,F401
