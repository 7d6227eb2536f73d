"""Run a plan of steps: apply with rollback, recorded write-ahead in the manifest; and uninstall by
replaying the manifest in reverse. A SIGKILL at any point leaves a manifest from which the next
install or uninstall completes (see manifest.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from hostagent import faults
from hostagent import manifest as manifest_mod
from hostagent.errors import HostagentError, InputError, RunFailed
from hostagent.host import paths
from hostagent.manifest import Manifest
from hostagent.steps import Step
from hostagent.steps.base import Record


@dataclass
class StepResult:
    id: str
    title: str
    status: str  # applied | unchanged | planned | reverted | kept | failed | rolled-back
    diff: Optional[str] = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": self.status, "diff": self.diff,
                "seconds": round(self.seconds, 3)}


@dataclass
class Outcome:
    command: str
    dry_run: bool
    steps: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(s.status in ("applied", "reverted", "planned") for s in self.steps)


Progress = Callable[[StepResult], None]


def _noop(_: StepResult) -> None:
    pass


def _message(e: BaseException) -> str:
    return str(e.args[0]) if isinstance(e, HostagentError) and e.args else f"{type(e).__name__}: {e}"


def _dry_run(plan: list[Step], outcome: Outcome, progress: Progress) -> Outcome:
    changed = False
    for step in plan:
        step.upstream_changed = changed
        same = step.check()
        changed = changed or not same
        result = StepResult(step.id, step.title, "unchanged" if same else "planned", None if same else step.diff())
        outcome.steps.append(result)
        progress(result)
    return outcome


def install(plan: list[Step], options: dict[str, Any], facts: dict[str, Any], dry_run: bool = False,
            progress: Progress = _noop, manifest_path: str = paths.MANIFEST) -> Outcome:
    """manifest_path: each installed service keeps its own (the agent's, k8s-sync's)."""
    outcome = Outcome("install", dry_run)
    existing = manifest_mod.load(manifest_path)
    superseded: list[tuple[Step, Record]] = []  # installed steps a planned one takes the place of
    if existing:
        planned_ids = {s.id for s in plan}
        superseded = [(s, r) for s, r in existing.steps() if s.id not in planned_ids and any(p.supersedes(s) for p in plan)]
        handed = {s.id for s, _ in superseded}
        orphans = [e["id"] for e in existing.entries if e["id"] not in planned_ids and e["id"] not in handed]
        if orphans:
            raise InputError(f"installed with different settings ({', '.join(orphans)}); run `hostagent uninstall` first")
    if dry_run:
        for step, _ in superseded:
            outcome.steps.append(StepResult(step.id, f"{step.title}: handed over", "planned"))
            progress(outcome.steps[-1])
        return _dry_run(plan, outcome, progress)

    manifest = existing or Manifest.new(options, facts, manifest_path)
    manifest.update_run(options, facts)
    previous = existing.copy() if existing else None
    undo: list[tuple[Step, Record]] = []  # this run's changes (the failing one too), for rollback
    changed = bool(superseded)
    for step, record in superseded:
        # Undone first, then forgotten: a run killed in between finds the package's file back and the
        # hand-over a no-op; what the plan then writes goes over the package's file.
        note = step.hand_over(record)
        manifest.drop(step.id)
        manifest.save()
        outcome.steps.append(StepResult(step.id, f"{step.title}: handed over", "reverted"))
        progress(outcome.steps[-1])
        outcome.notes.extend([note] if note else [])
    try:
        for step in plan:
            started = time.monotonic()
            step.upstream_changed = changed
            first = manifest.record_of(step.id)
            faults.point(f"before:{step.id}")
            if step.check():
                result = StepResult(step.id, step.title, "unchanged")
                record = first if first is not None else {"noop": True}
                manifest.put(step, record)
            else:
                planned_diff = step.diff()  # what changes, for --diff of a real run (Ansible)
                record_now = step.snapshot()
                # The manifest keeps what was there before the FIRST install, so uninstall restores
                # the host as hostagent found it, not an intermediate state; rollback uses this run's.
                record = step.keep_first(first, record_now) if first is not None and not first.get("noop") else record_now
                manifest.put(step, record, "applying")
                manifest.save()  # write-ahead: the intent and what to restore, before any change
                undo.append((step, record_now))
                changed = True
                faults.point(f"intent:{step.id}")
                step.apply(record_now)
                manifest_mod.flush_host()
                faults.point(f"applied:{step.id}")  # changed, not yet recorded as done
                manifest.put(step, record)
                result = StepResult(step.id, step.title, "applied", planned_diff)
            if changed:
                manifest.save()
            faults.point(f"after:{step.id}")
            result.seconds = time.monotonic() - started
            outcome.steps.append(result)
            progress(result)
    except Exception as e:  # roll back this run's changes, whatever failed
        done = len(outcome.steps) - len(superseded)
        failed = plan[done] if done < len(plan) else None
        failure = StepResult(failed.id if failed else "?", failed.title if failed else "", "failed")
        outcome.steps.append(failure)
        progress(failure)
        rollback_errors = _rollback(undo, outcome, progress)
        if rollback_errors:
            manifest.save()  # keep every entry: uninstall can still finish the job
        elif previous is not None:
            previous.save()
            manifest_mod.collect_backups(previous.referenced_backups())
        elif manifest.data.get("state_dir_created") or changed:
            manifest.remove()
        msg = _message(e)
        if rollback_errors:
            msg += " | rollback incomplete: " + "; ".join(rollback_errors)
        raise RunFailed(msg, outcome) from e
    manifest_mod.collect_backups(manifest.referenced_backups())
    return outcome


def _rollback(undo: list[tuple[Step, Record]], outcome: Outcome, progress: Progress) -> list[str]:
    errors = []
    for step, record in reversed(undo):
        try:
            note = step.revert(record)
            if note:
                outcome.notes.append(note)
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


def uninstall(dry_run: bool = False, keep_logs: bool = False, force: bool = False,
              progress: Progress = _noop, manifest_path: str = paths.MANIFEST) -> Outcome:
    outcome = Outcome("uninstall", dry_run)
    if force:
        manifest, unproven = manifest_mod.load_forced(manifest_path)
        outcome.notes.extend(unproven)
    else:
        manifest = manifest_mod.load(manifest_path)
    if manifest is None:
        outcome.notes.append("nothing to uninstall: no hostagent manifest on this host")
        return outcome
    for step, record in reversed(manifest.steps()):
        if record.get("noop"):
            result = StepResult(step.id, step.title, "unchanged")
            if not dry_run:
                manifest.drop(step.id)
        elif keep_logs and step.holds_data:
            result = StepResult(step.id, step.title, "kept")
            if not dry_run:
                note = step.keep(record)
                if note:
                    outcome.notes.append(note)
                manifest.drop(step.id)
                manifest.save()
        elif dry_run:
            result = StepResult(step.id, step.title, "planned", f"- {step.title}")
        else:
            started = time.monotonic()
            faults.point(f"revert-before:{step.id}")
            try:
                note = step.revert(record)  # idempotent: a crash here is finished by the next run
            except Exception as e:
                failure = StepResult(step.id, step.title, "failed")
                outcome.steps.append(failure)
                progress(failure)
                manifest.save()  # what is left, so a second uninstall can finish
                raise RunFailed(f"uninstall stopped at {step.id}: {_message(e)}", outcome) from e
            if note:
                outcome.notes.append(note)
            manifest_mod.flush_host()
            manifest.queue_after_revert(step, record)
            manifest.drop(step.id)
            manifest.save()
            faults.point(f"revert-after:{step.id}")
            result = StepResult(step.id, step.title, "reverted", seconds=time.monotonic() - started)
        outcome.steps.append(result)
        progress(result)
    if not dry_run:
        # Recorded in the manifest, so an uninstall stopped earlier (or killed) still runs them.
        for step, record in manifest.pending_after_revert():
            faults.point(f"after-revert:{step.id}")
            step.after_revert(record)
            manifest_mod.flush_host()
            manifest.done_after_revert(step.id)
            manifest.save()
        manifest.remove()
    return outcome
