"""The CLI's one output path: every command's --json prints the same envelope
(command, ok, changed, dry_run, steps, notes, error, exit_code, data), on success and on failure;
without --json a failure is one line on stderr. Exit codes: 0 ok, 1 failed (rolled back) or drift
found, 2 bad input or refused preflight (nothing changed)."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from hostagent.errors import HostagentError, RunFailed

# click and typer are imported where they are used: hostagent/cli/direct.py runs commands without them.
if TYPE_CHECKING:
    import click

STATUS_MARK = {"applied": "changed", "unchanged": "ok", "planned": "would change", "reverted": "undone",
               "kept": "kept", "failed": "FAILED", "rolled-back": "rolled back"}


@dataclass
class Report:
    command: str
    changed: bool = False
    dry_run: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "ok": self.exit_code == 0, "changed": self.changed,
                "dry_run": self.dry_run, "steps": self.steps, "notes": self.notes, "error": self.error,
                "exit_code": self.exit_code, "data": self.data}


def from_outcome(outcome: Any, **kw: Any) -> Report:
    """A Report from the engine's Outcome (install, uninstall)."""
    return Report(outcome.command, changed=outcome.changed, dry_run=outcome.dry_run,
                  steps=[s.to_dict() for s in outcome.steps], notes=list(outcome.notes), **kw)


@dataclass(frozen=True)
class Style:
    as_json: bool = False
    quiet: bool = False
    verbose: bool = False

    def say(self, text: str) -> None:
        if not (self.as_json or self.quiet):
            print(text, flush=True)

    def progress(self, result: Any) -> None:
        """One line per step as it runs; diffs of planned (and, with --verbose, applied) steps."""
        if self.as_json or self.quiet:
            return
        took = f" ({result.seconds:.2f}s)" if self.verbose and result.seconds else ""
        print(f"[{STATUS_MARK.get(result.status, result.status):>12}] {result.title}{took}", flush=True)
        if result.diff and (result.status == "planned" or self.verbose):
            for line in result.diff.rstrip("\n").splitlines():
                print(f"               {line}")


def options(as_json: bool, quiet: bool, verbose: bool, debug: bool) -> Style:
    if debug:
        from hostagent.host.run import DEBUG_ENV

        os.environ[DEBUG_ENV] = "1"
    return Style(as_json, quiet, verbose)


def failed(command: str, err: BaseException, style: Style) -> int:
    """Print a failure (one line; the envelope with --json) and return its exit code."""
    if isinstance(err, HostagentError):
        message, code = (str(err.args[0]) if err.args else type(err).__name__), err.exit_code
    else:  # a bug: still one line, and still JSON for callers such as Ansible
        message, code = f"internal error: {type(err).__name__}: {err}", 1
    outcome = err.outcome if isinstance(err, RunFailed) else None
    report = from_outcome(outcome) if outcome is not None else Report(command)
    report.command, report.error, report.exit_code = command, message, code
    if style.as_json:
        print(json.dumps(report.to_dict(), indent=2))
    first, *rest = message.splitlines() or [""]
    print(f"hostagent {command}: error: {first}", file=sys.stderr)
    if rest and style.verbose:
        print("\n".join(rest), file=sys.stderr)
    return code


def execute(command: str, style: Style, body: Callable[[], Report], human: Callable[[Report], None],
            passthrough: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command's body, print its Report or its failure, and return the exit code."""
    try:
        report = body()
    except passthrough:
        raise
    except Exception as e:
        return failed(command, e, style)
    if style.as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif not style.quiet:
        human(report)
    return report.exit_code


def run(command: str, style: Style, body: Callable[[], Report], human: Callable[[Report], None]) -> None:
    """execute() for a typer command: click's own exits pass through, a failure exits with its code."""
    import click
    import typer

    code = execute(command, style, body, human, (click.exceptions.Exit, click.exceptions.Abort, click.ClickException))
    if code:
        raise typer.Exit(code)


def usage_error(argv: list[str], err: click.UsageError) -> int:
    """Click's usage errors (unknown flag, bad choice) in the same shape: one line, JSON with --json."""
    command = err.ctx.info_name if err.ctx and err.ctx.parent else (argv[0] if argv else "hostagent")
    message = err.format_message().replace("\n", " ")
    if "--json" in argv:
        print(json.dumps(Report(str(command), error=message, exit_code=2).to_dict(), indent=2))
    print(f"hostagent {command}: error: {message}", file=sys.stderr)
    return 2
