"""The agent commands: install, uninstall, status, doctor (exec is hostagent.launcher.main, without
typer, for a fast agent start). Parse, call the library, hand a Report to the one output path. Heavy
modules are imported inside commands so that a no-op `install` starts fast."""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, List, Optional

import typer

from hostagent.cli.output import Report, Style, from_outcome, options, run
from hostagent.errors import InputError
from hostagent.options import SETTINGS

JSON = typer.Option(False, "--json", help="Print one JSON object (the envelope) instead of human output.")
QUIET = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")
VERBOSE = typer.Option(False, "--verbose", "-v", help="Show every diff, timings and whole error texts.")
DEBUG = typer.Option(False, "--debug", help="Echo each host command, pasteably, on stderr.")
YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")


def _setting(name: str) -> Any:
    """A typer option derived from the settings table: its flag and help (with the default). Numbers
    arrive as text and are checked by options.validate (click's int() would take non-ASCII digits)."""
    s = SETTINGS[name]
    metavar = {"int": "INTEGER", "float": "SECONDS"}.get(s.type, "TEXT")
    return typer.Option(None, s.flag, help=s.help_text, show_default=False, metavar=metavar)


def _confirm(style: Style, preview: Callable[[], Any], question: str) -> bool:
    """Ask on a terminal, after showing the plan; False when there is nothing to do."""
    if not preview().changed:
        style.say("nothing to change")
        return False
    if not typer.confirm(question):
        raise InputError("not confirmed; nothing was changed")
    return True


def install(
    controller_ip: Optional[List[str]] = _setting("controller_ips"),
    controller_port: Optional[str] = _setting("controller_port"),
    agent_binary: Optional[str] = _setting("agent_binary"),
    cluster_id: Optional[str] = _setting("cluster_id"),
    watcher_domain: Optional[str] = _setting("watcher_domain"),
    server: Optional[str] = _setting("server"),
    domain_timeout: Optional[str] = _setting("domain_timeout"),
    agent_group: Optional[str] = _setting("agent_group"),
    team_id: Optional[str] = _setting("team_id"),
    org_id: Optional[int] = _setting("org_id"),
    user: Optional[str] = _setting("user"),
    caps: Optional[str] = _setting("caps"),
    cpu_millicores: Optional[str] = _setting("cpu_millicores"),
    memory_mib: Optional[str] = _setting("memory_mib"),
    remote_upgrade: Optional[str] = _setting("remote_upgrade"),
    metrics_textfile: Optional[str] = _setting("metrics_textfile"),
    config_file: Optional[str] = typer.Option(None, help="YAML file with the same keys as these flags; flags win."),
    detect: bool = typer.Option(False, "--detect", help="Print the NIC layout and recommended group config first."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan with file diffs; change nothing."),
    yes: bool = YES, as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Install (or converge) the non-root agent. Safe to re-run: unchanged steps are skipped."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        from hostagent import engine, facts, manifest, planner
        from hostagent import options as settings

        file_values = settings.load_config_file(config_file) if config_file else None
        opts = settings.build(dict(
            agent_binary=agent_binary, controller_ips=controller_ip, controller_port=controller_port,
            cluster_id=cluster_id, watcher_domain=watcher_domain, server=server, domain_timeout=domain_timeout,
            agent_group=agent_group, team_id=team_id, org_id=org_id, user=user, caps=caps,
            cpu_millicores=cpu_millicores, memory_mib=memory_mib, remote_upgrade=remote_upgrade,
            metrics_textfile=metrics_textfile,
        ), file_values)
        host = facts.gather()
        if detect:
            from hostagent.net.detect import detect_layout

            style.say(detection_report(detect_layout()))
        resolved = planner.preflight(opts, host)
        for warning in resolved.warnings:
            print(f"hostagent install: warning: {warning}", file=sys.stderr)
        steps = planner.plan(opts, host, resolved)
        found = {**host.to_dict(), "remote_upgrade": {"mode": resolved.remote_upgrade, "why": resolved.remote_upgrade_why}}
        ask = not (yes or dry_run or as_json) and sys.stdin.isatty()
        preview = lambda: engine.install(steps, {}, {}, dry_run=True, progress=Style().progress)  # noqa: E731
        if ask and not _confirm(Style(), preview, "apply these changes?"):
            return Report("install")
        if dry_run:
            outcome = engine.install(steps, opts.to_dict(), found, dry_run=True, progress=style.progress)
        else:
            with manifest.locked():
                outcome = engine.install(steps, opts.to_dict(), found, progress=style.progress)
        outcome.notes.extend(resolved.warnings)
        outcome.notes.extend(line for s in steps for line in getattr(s, "reported", ()))  # agents left alone
        return from_outcome(outcome)

    run("install", style, body, lambda r: print(
        ("would change" if r.dry_run else "changed") if r.changed else "nothing to change: the host is already as asked"))


def detection_report(layout: Any) -> str:
    """The NIC layout and the recommended group config, for `install --detect`."""
    from hostagent.net.report import render_layout
    from hostagent.render import groupconfig

    text = groupconfig.to_yaml(groupconfig.build(layout, groupconfig.GroupConfigOptions()))
    return f"{render_layout(layout)}\nrecommended agent-group config (v6.6.9+ schema):\n{text.rstrip()}"


def uninstall(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed; change nothing."),
    keep_logs: bool = typer.Option(False, "--keep-logs", help="Leave /var/log/deepflow-agent and its logs in place."),
    force: bool = typer.Option(False, "--force", help="With a damaged manifest: revert what it proves, list the rest."),
    deregister: bool = typer.Option(
        False, "--deregister", help="Also delete this host's agent from the deepflow-server install used (--server); "
        "without it the server is left alone."),
    yes: bool = YES, as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Stop the agent and undo exactly what install recorded, in reverse."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        import os

        from hostagent import engine, manifest

        if os.geteuid() != 0 and not dry_run:
            raise InputError("hostagent uninstall must run as root")
        server_opts: dict[str, Any] = {}
        if deregister:
            installed = manifest.load()
            server_opts = (installed.data.get("options") if installed else None) or {}
            if not server_opts.get("server"):
                raise InputError("--deregister: hostagent installed this agent without --server, so it knows no "
                                 "server to deregister it from")
        ask = not (yes or dry_run or as_json) and sys.stdin.isatty()
        preview = lambda: engine.uninstall(dry_run=True, keep_logs=keep_logs, force=force, progress=Style().progress)  # noqa: E731
        if ask and not _confirm(Style(), preview, "remove all of this?"):
            return Report("uninstall")
        if dry_run:
            outcome = engine.uninstall(dry_run=True, keep_logs=keep_logs, force=force, progress=style.progress)
        else:
            with manifest.locked():
                outcome = engine.uninstall(keep_logs=keep_logs, force=force, progress=style.progress)
        if deregister:
            outcome.notes.append(_deregister(server_opts, dry_run))
        return from_outcome(outcome)

    run("uninstall", style, body,
        lambda r: print("\n".join(r.notes) or ("removed" if r.changed else "nothing to remove")))


def _deregister(opts: dict[str, Any], dry_run: bool) -> str:
    """After the agent stopped (a running one would register again): delete its record on the server."""
    from hostagent import server

    client = server.Client.for_server(opts["server"], 10.0, opts.get("org_id") or 1)
    if dry_run:
        agent, weak = server.lookup_host_agent(client)
        name = agent.get("NAME") if agent else None
        done = f"would delete agent {name} from {client.base}"
    else:
        name, weak = server.deregister_host_agent(client)
        done = f"deleted agent {name} from {client.base}"
    # Only an IP+MAC match is deleted: a weaker one may be another host's agent.
    return "; ".join([done if name else f"this host's agent (its CTRL_IP and CTRL_MAC) is not registered on {client.base}"] + weak)


def status(as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG) -> None:
    """What the manifest says is installed, and any drift of the host from it (exit 1 on drift)."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        from hostagent.status import status as read_status

        data = read_status()
        return Report("status", data=data, exit_code=1 if data["drift"] else 0,
                      error=f"{len(data['drift'])} drift problem(s)" if data["drift"] else None)

    run("status", style, body, print_status)


def print_status(r: Report, what: str = "") -> None:
    """`status`'s human output: the manifest's steps, each ok or drifted. what: whose manifest."""
    d = r.data or {}
    if not d.get("installed"):
        print(f"{what}not installed (no manifest)")
        return
    print(f"{what}installed {d['installed_at']} (updated {d['updated_at']})")
    if d.get("remote_upgrade"):
        print(f"remote upgrade: {d['remote_upgrade']['mode']} ({d['remote_upgrade']['why']})")
    for s in d["steps"]:
        print(f"[{'ok' if s['ok'] else 'DRIFT':>5}] {s['title']}")
        for p in s["problems"]:
            print(f"        {p}")
        for n in s.get("notes", []):
            print(f"        note: {n}")


def doctor(
    timeout: float = typer.Option(2.0, help="Seconds per controller TCP check."),
    prometheus: Optional[str] = typer.Option(
        None, "--prometheus", metavar="FILE", help="Also write the findings as node_exporter textfile metrics to FILE "
        "(*.prom, replaced atomically); exit 0 once written: the problems are in the metrics."),
    as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Inspect the running agent: user, capabilities, cgroups, limits, config, controller reachability."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        from hostagent import metrics
        from hostagent.doctor import examine

        if prometheus is not None:
            metrics.check_dir(os.path.dirname(os.path.abspath(prometheus)), "--prometheus's directory")
        data = examine(timeout)
        problems = data["problems"]
        if prometheus is not None:
            metrics.write(os.path.abspath(prometheus), metrics.render(data))
            return Report("doctor", data=data)
        return Report("doctor", data=data, exit_code=1 if problems else 0,
                      error=f"{len(problems)} problem(s) found" if problems else None)

    run("doctor", style, body, lambda r: print_doctor(r.data or {}))


def print_doctor(report: dict[str, Any]) -> None:
    print(f"cgroup mode: {report['cgroup_mode']}; installed by hostagent: {'yes' if report['installed'] else 'no'}; "
          f"service manager: {report['init']}" + (" (the unit's sandbox)" if report.get("sandboxed") else " (no sandbox)"))
    for p in report["processes"]:
        print(f"agent pid {p['pid']}: uid {p['uid']} gid {p['gid']}")
        for key in ("CapEff", "CapPrm", "CapBnd"):
            print(f"  {key}: {','.join(p[key]) or '-'}")
        print(f"  cgroups: {' '.join(p['cgroups'])}")
        for name, value in p["limits"].items():
            print(f"  {name} = {value}")
    lim = report.get("limits")
    if lim:
        def show(v: dict[str, Any]) -> str:
            return f"{v.get('max_millicpus') or 'unlimited'}m CPU, {v.get('max_memory') or 'unlimited'} MiB"
        print(f"limits in force: {show(lim['in_force'])} (install's, until the agent has its config: {show(lim['install'])})")
        if lim.get("group") is not None:
            verdict = "agree" if lim["agree"] else "DIFFER"
            print(f"group {lim.get('group_id') or '?'} global.limits: {show(lim['group'])} ({verdict})")
    upgrade = report.get("remote_upgrade")
    if upgrade:
        print(f"remote upgrade: {upgrade['mode']} ({upgrade['why']}): {upgrade['says']}")
    cfg = report["config"]
    state = "parses" if cfg.get("parses") else ("missing" if cfg.get("error") == "No such file or directory" else "DOES NOT PARSE")
    print(f"config {cfg.get('path')}: {state}")
    for c in report["controllers"]:
        print(f"controller {c['ip']}:{c['port']}: {'reachable' if c['reachable'] else 'NOT reachable: ' + str(c['error'])}")
    for note in report.get("notes") or []:
        print(f"note: {note}")
    if report["problems"]:
        print("problems:")
        for problem in report["problems"]:
            print(f"  - {problem}")
    else:
        print("no problems found")


def register(app: typer.Typer) -> None:
    app.command()(install)
    app.command()(uninstall)
    app.command()(status)
    app.command()(doctor)
