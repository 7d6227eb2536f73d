"""hostagent's unit as a drop-in over the unit of DeepFlow's package (hostagent.render.dropin): the
package's files stay the package's, so its upgrades replace them and leave hostagent's service in force."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

from hostagent.facts.files import read_nofollow
from hostagent.render import dropin
from hostagent.steps.base import Record, Step
from hostagent.steps.files import ServiceDefinition


def _digest(path: str) -> Optional[str]:
    try:
        data = read_nofollow(path)
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest() if data is not None else None


@dataclass
class UnitDropIn(ServiceDefinition):
    """base: the package's unit (as the host names it) that this drop-in overrides."""

    kind = "unit-drop-in"
    base: str = ""

    @property
    def title(self) -> str:
        return f"drop-in {self.path} over {self.base} (hostagent's unit in effect)"

    def snapshot(self) -> Record:
        return {**super().snapshot(), "base_sha256": _digest(self.base)}

    def keep_first(self, first: Record, now: Record) -> Record:
        return {**first, "base_sha256": now.get("base_sha256")}

    def drift(self) -> list[str]:
        problems = super().drift()
        try:
            package = read_nofollow(self.base)
        except OSError:
            package = None
        if package is None:
            problems.append(f"{self.base} is gone (DeepFlow's package removed?): the agent's service has no unit "
                            "but hostagent's drop-in; reinstall the package and run `hostagent install`, "
                            "or run `hostagent uninstall`")
            return problems
        missing = dropin.uncovered(self.content, package.decode(errors="replace"))
        if missing:
            problems.append(f"DeepFlow's package changed {self.base}: it now sets {', '.join(m + '=' for m in missing)} "
                            "which hostagent's drop-in does not override; run `hostagent install` again")
        return problems

    def supersedes(self, other: Step) -> bool:
        # hostagent's full unit, written over the package's unit by an earlier hostagent.
        return other.kind == "service-definition" and getattr(other, "path", None) == self.base

    def notes(self, record: Record) -> list[str]:
        """Not drift: the package's unit changed (an upgrade) and the drop-in still overrides it all."""
        now = _digest(self.base)
        if now is not None and record.get("base_sha256") and now != record["base_sha256"]:
            return [f"DeepFlow's package replaced {self.base} since install (a package upgrade); "
                    "hostagent's drop-in still overrides all of it"]
        return []
