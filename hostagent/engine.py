"""Run a plan of steps: apply with rollback, record in the manifest; and uninstall by replaying the
manifest in reverse."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from hostagent import __version__, manifest as manifest_mod
from hostagent.errors import HostagentError, InputError, StepError
from hostagent.steps import Step, from_dict


@dataclass
class StepResult:
    id: str
    title: str
    status: str  # applied | unchanged | planned | reverted | failed | rolled-back
    diff: Optional[str] = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "status": self.status, "diff": self.diff,
                "seconds": round(self.seconds, 3)}


@dataclass
class Outcome:
    command: str
    dry_run: bool
    steps: list[StepResult] = field(default_factory=list)
    error: Optional[str] = None
    exit_code: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(s.status in ("applied", "reverted", "planned") for s in self.steps)

    def to_dict(self) -> dict:
        return {"command": self.command, "ok": self.exit_code == 0, "changed": self.changed,
                "dry_run": self.dry_run, "steps": [s.to_dict() for s in self.steps],
                "notes": self.notes, "error": self.error, "exit_code": self.exit_code}


Progress = Callable[[StepResult], None]


def _noop(_: StepResult) -> None:
    pass


def install(plan: list[Step], options: dict, facts: dict, dry_run: bool = False,
            progress: Progress = _noop) -> Outcome:
    outcome = Outcome("install", dry_run)
    existing = manifest_mod.load()
    if existing:
        planned_ids = {s.id for s in plan}
        orphans = [e["id"] for e in existing["steps"] if e["id"] not in planned_ids]
        if orphans:
            raise InputError(f"installed with different settings ({', '.join(orphans)}); run `hostagent uninstall` first")
    if dry_run:
        changed = False
        for step in plan:
            step.upstream_changed = changed
            same = step.check()
            changed = changed or not same
            result = StepResult(step.id, step.title, "unchanged" if same else "planned", None if same else step.diff())
            outcome.steps.append(result)
            progress(result)
        return outcome

    records = {e["id"]: e["record"] for e in existing["steps"]} if existing else {}
    manifest = existing or {
        "version": manifest_mod.VERSION, "hostagent": __version__,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "state_dir_created": False, "steps": [],
    }
    manifest["options"], manifest["facts"], manifest["hostagent"] = options, facts, __version__
    previous_manifest = _copy(existing)
    undo: list[tuple[Step, dict]] = []  # this run's changes, for rollback
    changed = False
    manifest_written = False
    state_ready = existing is not None
    try:
        for step in plan:
            started = time.monotonic()
            step.upstream_changed = changed
            if step.check():
                result = StepResult(step.id, step.title, "unchanged")
                record = records.get(step.id, {"noop": True})
            else:
                if not state_ready:
                    manifest["state_dir_created"] = manifest_mod.ensure_state_dir()
                    state_ready = True
                planned_diff = step.diff()  # what changes, for --diff of a real run (Ansible)
                record_now = step.apply()
                undo.append((step, record_now))
                changed = True
                # The manifest keeps what was there before the FIRST install, so uninstall restores
                # the host as hostagent found it, not an intermediate state.
                record = records.get(step.id, record_now)
                if record.get("noop"):
                    record = record_now
                result = StepResult(step.id, step.title, "applied", planned_diff)
            result.seconds = time.monotonic() - started
            _put(manifest, step, record)
            if changed:
                manifest_mod.save(manifest)
                manifest_written = True
            outcome.steps.append(result)
            progress(result)
    except Exception as e:  # roll back this run's changes, whatever failed
        failed_id = plan[len(outcome.steps)].id if len(outcome.steps) < len(plan) else "?"
        failure = StepResult(failed_id, plan[len(outcome.steps)].title if len(outcome.steps) < len(plan) else "", "failed")
        outcome.steps.append(failure)
        progress(failure)
        rollback_errors = _rollback(undo, outcome, progress)
        if previous_manifest is not None:
            manifest_mod.save(previous_manifest)
        elif manifest_written or manifest.get("state_dir_created"):
            manifest_mod.remove(manifest)
        msg = e.args[0] if isinstance(e, HostagentError) and e.args else f"{type(e).__name__}: {e}"
        if rollback_errors:
            msg += " | rollback incomplete: " + "; ".join(rollback_errors)
        err = StepError(msg)
        err.outcome = outcome  # type: ignore[attr-defined]
        raise err from e
    return outcome


def _rollback(undo: list[tuple[Step, dict]], outcome: Outcome, progress: Progress) -> list[str]:
    errors = []
    for step, record in reversed(undo):
        try:
            step.revert(record)
            result = StepResult(step.id, step.title, "rolled-back")
        except Exception as e:  # keep going: leave as little behind as possible
            errors.append(f"{step.id}: {e}")
            result = StepResult(step.id, step.title, "failed")
        outcome.steps.append(result)
        progress(result)
    for step, record in reversed(undo):
        try:
            step.after_revert(record)
        except Exception as e:
            errors.append(f"{step.id}: {e}")
    return errors


def uninstall(dry_run: bool = False, keep_logs: bool = False, progress: Progress = _noop) -> Outcome:
    outcome = Outcome("uninstall", dry_run)
    manifest = manifest_mod.load()
    if manifest is None:
        outcome.notes.append("nothing to uninstall: no hostagent manifest on this host")
        return outcome
    entries = list(manifest["steps"])
    done: list[tuple[Step, dict]] = []
    for entry in reversed(entries):
        step = from_dict(entry)
        if keep_logs and step.kind == "dir" and step.params.get("purge"):
            step.params["keep"] = True
        record = entry["record"]
        if record.get("noop"):
            result = StepResult(step.id, step.title, "unchanged")
        elif dry_run:
            result = StepResult(step.id, step.title, "planned", f"- {step.title}")
        else:
            started = time.monotonic()
            try:
                step.revert(record)
            except Exception as e:
                failure = StepResult(step.id, step.title, "failed")
                outcome.steps.append(failure)
                progress(failure)
                manifest_mod.save(manifest)  # what is left, so a second uninstall can finish
                msg = e.args[0] if isinstance(e, HostagentError) and e.args else f"{type(e).__name__}: {e}"
                raise StepError(f"uninstall stopped at {step.id}: {msg}") from e
            done.append((step, record))
            manifest["steps"] = [x for x in manifest["steps"] if x["id"] != step.id]
            manifest_mod.save(manifest)
            result = StepResult(step.id, step.title, "reverted", seconds=time.monotonic() - started)
        outcome.steps.append(result)
        progress(result)
    if not dry_run:
        for step, record in done:
            step.after_revert(record)
        manifest_mod.remove(manifest)
    return outcome


def status() -> dict:
    manifest = manifest_mod.load()
    if manifest is None:
        return {"installed": False, "drift": [], "steps": []}
    steps, drift = [], []
    for entry in manifest["steps"]:
        step = from_dict(entry)
        problems = [] if entry["record"].get("noop") and step.check() else step.drift()
        steps.append({"id": step.id, "title": step.title, "ok": not problems, "problems": problems})
        drift.extend(problems)
    return {"installed": True, "installed_at": manifest.get("installed_at"), "updated_at": manifest.get("updated_at"),
            "options": manifest.get("options"), "facts": manifest.get("facts"), "steps": steps, "drift": drift}


def _put(manifest: dict, step: Step, record: dict) -> None:
    entry = {**step.to_dict(), "record": record}
    for i, existing in enumerate(manifest["steps"]):
        if existing["id"] == step.id:
            manifest["steps"][i] = entry
            return
    manifest["steps"].append(entry)


def _copy(d: Optional[dict]) -> Optional[dict]:
    import copy

    return copy.deepcopy(d) if d is not None else None
