"""`hostagent status`: what the manifest says is installed, and how the host drifted from it.
Read-only: it never changes the host."""
from __future__ import annotations

from typing import Any

from hostagent import manifest as manifest_mod
from hostagent import paths


def status(path: str = paths.MANIFEST) -> dict[str, Any]:
    manifest = manifest_mod.load(path)
    if manifest is None:
        return {"installed": False, "drift": [], "steps": []}
    steps, drift = [], []
    for step, record in manifest.steps():
        problems = [] if record.get("noop") and step.check() else step.drift()
        steps.append({"id": step.id, "title": step.title, "ok": not problems, "problems": problems})
        drift.extend(problems)
    data = manifest.data
    return {"installed": True, "installed_at": data.get("installed_at"), "updated_at": data.get("updated_at"),
            "options": data.get("options"), "facts": data.get("facts"), "steps": steps, "drift": drift}
