"""`hostagent status`: what the manifest says is installed, and how the host drifted from it.
Read-only: it never changes the host."""
from __future__ import annotations

from typing import Any

from hostagent import manifest as manifest_mod
from hostagent.errors import HostagentError
from hostagent.host import paths
from hostagent.steps import Record, Step

NOT_YET = ("deny", "no binary installed yet")


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
        return {"installed": False, "drift": [], "notes": [], "steps": []}
    steps, drift, notes = [], [], []
    waiting: set[str] = set()  # paths the agent's next start restores (steps come in install order)
    for step, record in manifest.steps():
        if step.restored_at_start(record):
            waiting.add(step.key)
        problems = [] if step.key in waiting else _problems(step, record)
        step_notes = step.notes(record)
        steps.append({"id": step.id, "title": step.title, "ok": not problems, "problems": problems, "notes": step_notes})
        drift.extend(problems)
        notes.extend(step_notes)
    data = manifest.data
    return {"installed": True, "installed_at": data.get("installed_at"), "updated_at": data.get("updated_at"),
            "options": data.get("options"), "facts": data.get("facts"), "steps": steps, "drift": drift,
            "notes": notes, "remote_upgrade": dict(zip(("mode", "why"), manifest.remote_upgrade() or NOT_YET))}
