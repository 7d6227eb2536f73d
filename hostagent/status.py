"""`hostagent status`: what the manifest says is installed, and how the host drifted from it.
Read-only: it never changes the host."""
from __future__ import annotations

import shutil
from typing import Any, Optional

from hostagent import host
from hostagent import manifest as manifest_mod
from hostagent.errors import HostagentError
from hostagent.facts.files import lstat_or_none
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


def owning_package(path: str) -> Optional[str]:
    """The dpkg or rpm package whose own content is at a host path now (its digest verifies), if any:
    not the package when something else (the agent's own upgrade) replaced the file since."""
    h = host.current()
    if not h.local:
        return None  # a test's temp root: the package databases are this machine's
    for query, verify in ((["dpkg-query", "-S", path], ["dpkg", "--verify"]),
                          (["rpm", "-qf", "--qf", "%{NAME}", path], ["rpm", "-V", "--nodeps"])):
        if not shutil.which(query[0]):
            continue
        out = (h.output(query) or "").strip()
        package = out.split(":", 1)[0] if query[0] == "dpkg-query" else out
        if not package:
            continue
        # Both list changed files as "<flags> [c] <path>"; a 5 in the flags: the digest differs.
        report = h.run(verify + [package], timeout=60, check=False).stdout
        changed = any(line.split()[-1] == path and "5" in line.split()[0] for line in report.splitlines() if line.split())
        return None if changed else package
    return None


def _binary_replaced(step: Step, record: Record) -> Optional[str]:
    """A note when the binary hostagent took over was replaced since (a package upgrade): its owner, mode
    and capabilities then wait for the next start, which restores them; not drift."""
    if step.kind != "binary" or not record.get("installed"):
        return None
    st = lstat_or_none(step.path)  # type: ignore[attr-defined]
    if st is None or [st.st_size, st.st_mtime_ns] == record["installed"]:
        return None
    h = host.current()
    shown = step.path if h.local else step.path[len(h.root):]  # type: ignore[attr-defined]
    package = owning_package(shown)
    what = f"DeepFlow's package ({package}) replaced {shown} since install (a package upgrade)" if package else \
        f"{shown} was replaced since install (an upgrade)"
    return f"{what}: its owner, mode and capabilities are restored at each start of the agent"


def status(path: str = paths.MANIFEST) -> dict[str, Any]:
    manifest = manifest_mod.load(path)
    if manifest is None:
        return {"installed": False, "drift": [], "notes": [], "steps": []}
    steps, drift, notes = [], [], []
    replaced = None
    for step, record in manifest.steps():
        replaced = replaced or _binary_replaced(step, record)
        problems = _problems(step, record)
        step_notes = list(getattr(step, "notes", lambda r: [])(record))
        if replaced and step.kind in ("binary", "caps"):
            # Owner, mode, caps (and, copied from elsewhere, content) are the package's until the next start.
            step_notes, problems = step_notes + ([replaced] if step.kind == "binary" else []), []
        steps.append({"id": step.id, "title": step.title, "ok": not problems, "problems": problems, "notes": step_notes})
        drift.extend(problems)
        notes.extend(step_notes)
    data = manifest.data
    return {"installed": True, "installed_at": data.get("installed_at"), "updated_at": data.get("updated_at"),
            "options": data.get("options"), "facts": data.get("facts"), "steps": steps, "drift": drift,
            "notes": notes}
