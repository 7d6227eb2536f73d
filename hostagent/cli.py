"""The command line: parse, call the library, print. Heavy modules are imported inside commands so
that `hostagent exec` and a no-op `install` start fast."""
from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

from hostagent.errors import HostagentError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Install the DeepFlow agent as a non-root service, and take it back out cleanly.")

JSON_OPT = typer.Option(False, "--json", help="Print one JSON object instead of human output.")


def _print_version(value: bool) -> None:
    if value:
        from hostagent import __version__

        print(f"hostagent {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print hostagent's version and exit.")) -> None:
    pass


def _emit(obj: dict, as_json: bool, human) -> None:
    if as_json:
        print(json.dumps(obj, indent=2))
    else:
        human(obj)


def _fail(err: HostagentError, as_json: bool, command: str) -> None:
    outcome = getattr(err, "outcome", None)
    message = str(err.args[0]) if err.args else type(err).__name__
    if as_json:
        obj = outcome.to_dict() if outcome else {"command": command, "ok": False, "changed": False, "steps": []}
        obj.update({"ok": False, "error": message, "exit_code": err.exit_code})
        print(json.dumps(obj, indent=2))
    print(f"hostagent {command}: error: {message}", file=sys.stderr)
    raise typer.Exit(err.exit_code)


STATUS_MARK = {"applied": "changed", "unchanged": "ok", "planned": "would change", "reverted": "undone",
               "failed": "FAILED", "rolled-back": "rolled back"}


def _progress(as_json: bool):
    def show(result) -> None:
        if as_json:
            return
        print(f"[{STATUS_MARK.get(result.status, result.status):>12}] {result.title}", flush=True)
        if result.diff and result.status == "planned":
            for line in result.diff.rstrip("\n").splitlines():
                print(f"               {line}")
    return show


@app.command()
def install(
    agent_binary: Optional[str] = typer.Option(None, help="Agent binary to install [default: /usr/sbin/deepflow-agent already present]."),
    controller_ip: Optional[List[str]] = typer.Option(None, "--controller-ip", help="deepflow-server controller IP (repeatable, required)."),
    controller_port: Optional[int] = typer.Option(None, help="Controller port [default: 30035]."),
    cluster_id: Optional[str] = typer.Option(None, help="kubernetes-cluster-id to write."),
    watcher_domain: Optional[str] = typer.Option(None, help="Look the cluster id up from this watcher Domain (needs --server)."),
    server: Optional[str] = typer.Option(None, help="deepflow-server API HOST[:PORT] [default port: 30417]."),
    domain_timeout: Optional[float] = typer.Option(None, help="Seconds to wait for the watcher Domain to appear [default: 120]."),
    agent_group: Optional[str] = typer.Option(None, help="Agent group id g-XXXXXXXXXX (or a name, with --server) → vtap-group-id-request."),
    user: Optional[str] = typer.Option(None, help="System user the agent runs as [default: deepflow]."),
    caps: Optional[str] = typer.Option(None, help="Capability profile (deepflow-doc, cbpf-minimal, ebpf) or list cap_a,cap_b [default: deepflow-doc]."),
    cpu_millicores: Optional[int] = typer.Option(None, help="CPU limit in millicores [default: 1000]."),
    memory_mib: Optional[int] = typer.Option(None, help="Memory limit in MiB [default: 768]."),
    config_file: Optional[str] = typer.Option(None, help="YAML file with the same keys as these flags; flags win."),
    detect: bool = typer.Option(False, "--detect", help="Print the NIC layout and recommended group config first."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan with file diffs; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = JSON_OPT,
) -> None:
    """Install (or converge) the non-root agent. Safe to re-run: unchanged steps are skipped."""
    from hostagent import engine, facts, options, planner

    try:
        file_values = options.load_config_file(config_file) if config_file else None
        opts = options.build(dict(
            agent_binary=agent_binary, controller_ips=controller_ip, controller_port=controller_port,
            cluster_id=cluster_id, watcher_domain=watcher_domain, server=server, domain_timeout=domain_timeout,
            agent_group=agent_group, user=user, caps=caps, cpu_millicores=cpu_millicores, memory_mib=memory_mib,
        ), file_values)
        host = facts.gather()
        if detect and not as_json:
            _print_detection()
        resolved = planner.preflight(opts, host)
        for warning in resolved.warnings:
            print(f"hostagent install: warning: {warning}", file=sys.stderr)
        steps = planner.plan(opts, host, resolved)
        if not (yes or dry_run or as_json) and sys.stdin.isatty():
            preview = engine.install(steps, {}, {}, dry_run=True, progress=_progress(False))
            if not preview.changed:
                print("nothing to change")
                return
            if not typer.confirm("apply these changes?"):
                raise typer.Exit(2)
        from hostagent import manifest

        if dry_run:
            outcome = engine.install(steps, opts.to_dict(), host.to_dict(), dry_run=True, progress=_progress(as_json))
        else:
            with manifest.locked():
                outcome = engine.install(steps, opts.to_dict(), host.to_dict(), progress=_progress(as_json))
    except HostagentError as e:
        _fail(e, as_json, "install")
        return
    except Exception as e:  # a bug: still one line, and still JSON for callers such as Ansible
        _fail(HostagentError(f"internal error: {type(e).__name__}: {e}"), as_json, "install")
        return
    outcome.notes.extend(resolved.warnings)
    _emit(outcome.to_dict(), as_json, lambda o: print(
        ("would change" if dry_run else "changed") if o["changed"] else "nothing to change: the host is already as asked"))


def _print_detection() -> None:
    try:
        from hostagent.netlayout import detect_layout, render_human  # type: ignore[attr-defined]
    except ImportError:
        print("hostagent install: --detect needs hostagent.netlayout", file=sys.stderr)
        return
    print(render_human(detect_layout()))


@app.command()
def uninstall(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed; change nothing."),
    keep_logs: bool = typer.Option(False, "--keep-logs", help="Leave /var/log/deepflow-agent in place."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stop the agent and undo exactly what install recorded, in reverse."""
    import os

    from hostagent import engine, manifest

    try:
        if os.geteuid() != 0 and not dry_run:
            from hostagent.errors import InputError

            raise InputError("hostagent uninstall must run as root")
        if not (yes or dry_run or as_json) and sys.stdin.isatty():
            engine.uninstall(dry_run=True, keep_logs=keep_logs, progress=_progress(False))
            if not typer.confirm("remove all of this?"):
                raise typer.Exit(2)
        if dry_run:
            outcome = engine.uninstall(dry_run=True, keep_logs=keep_logs, progress=_progress(as_json))
        else:
            with manifest.locked():
                outcome = engine.uninstall(keep_logs=keep_logs, progress=_progress(as_json))
    except HostagentError as e:
        _fail(e, as_json, "uninstall")
        return
    _emit(outcome.to_dict(), as_json, lambda o: print("\n".join(o["notes"]) or ("removed" if o["changed"] else "nothing to remove")))


@app.command()
def status(as_json: bool = JSON_OPT) -> None:
    """What the manifest says is installed, and any drift of the host from it."""
    from hostagent import engine

    try:
        report = engine.status()
    except HostagentError as e:
        _fail(e, as_json, "status")
        return

    def human(r: dict) -> None:
        if not r["installed"]:
            print("not installed (no manifest)")
            return
        print(f"installed {r['installed_at']} (updated {r['updated_at']})")
        for s in r["steps"]:
            print(f"[{'ok' if s['ok'] else 'DRIFT':>5}] {s['title']}")
            for p in s["problems"]:
                print(f"        {p}")

    _emit(report, as_json, human)
    if report["drift"]:
        raise typer.Exit(1)


@app.command()
def doctor(
    timeout: float = typer.Option(2.0, help="Seconds per controller TCP check."),
    as_json: bool = JSON_OPT,
) -> None:
    """Inspect the running agent: user, capabilities, cgroups, limits, config, controller reachability."""
    from hostagent import doctor as doctor_mod

    try:
        report = doctor_mod.examine(timeout)
    except HostagentError as e:
        _fail(e, as_json, "doctor")
        return
    _emit(report, as_json, doctor_mod.render)
    if report["problems"]:
        raise typer.Exit(1)


@app.command("exec", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(ctx: typer.Context) -> None:
    """Run the agent: as root prepare cgroups and capabilities, drop to the user, exec the agent.
    For systemd (the installed unit uses it), SysV init or supervisord. `hostagent exec --help`."""
    from hostagent import launcher

    raise typer.Exit(launcher.main(list(ctx.args)))


from hostagent.cli_net import register as _register_net  # noqa: E402  (light: imports typer only)

_register_net(app)


def main() -> None:
    # The unit calls `exec` at every start: skip typer's import cost for it.
    if sys.argv[1:2] == ["exec"]:
        from hostagent import launcher

        raise SystemExit(launcher.main(sys.argv[2:]))
    app()
