"""`hostagent status`: what the manifest says is installed, and how the host drifted from it.
Read-only: it never changes the host."""
from __future__ import annotations

from typing import Any

from hostagent import manifest as manifest_mod
from hostagent.errors import HostagentError
from hostagent.host import paths
from hostagent.steps import Record, Step


def _problems(step: Step, record: Record) -> list[str]:
    """A step that had nothing to do at install is fine while its check holds; otherwise its drift (which
    says why, e.g. a server that cannot be reached)."""
    if record.get("noop"):
        try:
            if step.check():
                return []
        except HostagentError:
            pass
    return step.drift()


def status(path: str = paths.MANIFEST) -> dict[str, Any]:
    manifest = manifest_mod.load(path)
    if manifest is None:
        return {"installed": False, "drift": [], "steps": []}
    steps, drift = [], []
    for step, record in manifest.steps():
        problems = _problems(step, record)
        steps.append({"id": step.id, "title": step.title, "ok": not problems, "problems": problems})
        drift.extend(problems)
    data = manifest.data
    return {"installed": True, "installed_at": data.get("installed_at"), "updated_at": data.get("updated_at"),
            "options": data.get("options"), "facts": data.get("facts"), "steps": steps, "drift": drift}
