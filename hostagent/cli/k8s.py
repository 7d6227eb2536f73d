"""`hostagent k8s-sync run|install|uninstall|status`: the pseudo-agent that reports Kubernetes
resources to deepflow-server (KubernetesAPISync), and its service. Parse, call the library, hand a
Report to the one output path."""
from __future__ import annotations

import sys
from typing import Any, List, Optional

import typer

from hostagent.cli.agent import DEBUG, JSON, QUIET, VERBOSE, YES, _confirm, print_status
from hostagent.cli.output import Report, Style, from_outcome, options, run
from hostagent.errors import InputError
from hostagent.options import K8S_SYNC

app = typer.Typer(no_args_is_help=True, help="Report Kubernetes resources to deepflow-server over gRPC (KubernetesAPISync), "
                                             "as a non-root service without capabilities.")


def _opt(name: str) -> Any:
    s = K8S_SYNC[name]
    if s.type == "bool":
        flags = f"{s.flag}/--no-{s.flag[2:]}"
        return typer.Option(None, flags, help=s.help_text, show_default=False)
    metavar = {"int": "INTEGER", "float": "SECONDS"}.get(s.type, "TEXT")
    return typer.Option(None, s.flag, help=s.help_text, show_default=False, metavar=metavar)


CONFIG_FILE = typer.Option(None, "--config-file", help="YAML file with the same keys as these flags; flags win.")


def _build(config_file: Optional[str], **values: Any) -> Any:
    from hostagent import options as settings

    file_values = settings.load_config_file(config_file) if config_file else None
    return settings.build_k8s_sync(values, file_values)


def run_command(
    controller_ip: Optional[List[str]] = _opt("controller_ips"),
    controller_port: Optional[str] = _opt("controller_port"),
    cluster_id: Optional[str] = _opt("cluster_id"),
    team_id: Optional[str] = _opt("team_id"),
    kubeconfig: Optional[str] = _opt("kubeconfig"),
    interval: Optional[str] = _opt("interval"),
    tls: Optional[bool] = _opt("tls"),
    tls_ca: Optional[str] = _opt("tls_ca"),
    configmaps: Optional[bool] = _opt("configmaps"),
    max_message_mib: Optional[str] = _opt("max_message_mib"),
    config_file: Optional[str] = CONFIG_FILE,
    once: bool = typer.Option(False, "--once", help="Send one report (after the first lists) and exit; with --json, print it."),
    as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Run the pseudo-agent: list-watch the apiserver, report to the controllers (logs on stderr / the journal)."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        import logging
        import signal

        _need_runtime()
        from hostagent.k8ssync import kube
        from hostagent.k8ssync.reporter import Reporter, ReportError
        from hostagent.k8ssync.runner import Runner

        opts = _build(config_file, controller_ips=controller_ip, controller_port=controller_port, cluster_id=cluster_id,
                      team_id=team_id, kubeconfig=kubeconfig, interval=interval, tls=tls, tls_ca=tls_ca,
                      configmaps=configmaps, max_message_mib=max_message_mib)
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING if quiet else logging.DEBUG if debug else logging.INFO,
                            format="%(levelname)s %(message)s")
        kc = kube.load(opts.kubeconfig)
        reporter = Reporter(list(opts.controller_ips), opts.controller_port, tls=opts.tls, ca_file=opts.tls_ca,
                            max_message=opts.max_message_mib << 20)
        runner = Runner(opts, kc, reporter)
        signal.signal(signal.SIGTERM, lambda *_: runner.stop.set())
        signal.signal(signal.SIGINT, lambda *_: runner.stop.set())
        try:
            runner.loop(once=once)
        except ReportError as e:
            raise _failed(str(e)) from None
        finally:
            runner.stop.set()
            reporter.close()
        last = runner.sent[-1].to_dict() if runner.sent else None
        return Report("k8s-sync run", data={"cluster_id": runner.cluster_id, "report": last})

    run("k8s-sync run", style, body, lambda r: print(_describe((r.data or {}).get("report"))))


def _need_runtime() -> None:
    """k8s-sync's libraries: the single file carries them, a pip install only with the k8s extra.
    Without them, one line naming the extra, not a traceback."""
    import importlib.util

    missing = [m for m in ("kubernetes", "grpc") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"k8s-sync needs the Python packages {', '.join(missing)}, which this install lacks: "
                         "pip install 'hostagent[k8s]' (or use the single file, .deb or .rpm, which carry them)")


def _failed(message: str) -> Exception:
    from hostagent.errors import HostagentError

    return HostagentError(message)


def _describe(report: Optional[dict[str, Any]]) -> str:
    if not report:
        return "stopped before the first report"
    if report.get("skipped"):
        return f"version {report['version']} not sent: {report['skipped']}"
    return (f"reported version {report['version']} to {report['controller']} ({report['service']}): "
            f"{report['entries']} entries, {report['size']} bytes")


def install(
    controller_ip: Optional[List[str]] = _opt("controller_ips"),
    controller_port: Optional[str] = _opt("controller_port"),
    cluster_id: Optional[str] = _opt("cluster_id"),
    team_id: Optional[str] = _opt("team_id"),
    kubeconfig: Optional[str] = _opt("kubeconfig"),
    interval: Optional[str] = _opt("interval"),
    tls: Optional[bool] = _opt("tls"),
    tls_ca: Optional[str] = _opt("tls_ca"),
    configmaps: Optional[bool] = _opt("configmaps"),
    max_message_mib: Optional[str] = _opt("max_message_mib"),
    user: Optional[str] = _opt("user"),
    config_file: Optional[str] = CONFIG_FILE,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan with file diffs; change nothing."),
    yes: bool = YES, as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Install (or converge) k8s-sync as a service: its own user, no capabilities, a hardened unit."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        from hostagent import engine, facts, manifest
        from hostagent.host import paths
        from hostagent.k8ssync import install as k8s_install

        _need_runtime()

        opts = _build(config_file, controller_ips=controller_ip, controller_port=controller_port, cluster_id=cluster_id,
                      team_id=team_id, kubeconfig=kubeconfig, interval=interval, tls=tls, tls_ca=tls_ca,
                      configmaps=configmaps, max_message_mib=max_message_mib, user=user)
        host = facts.gather()
        group, flat = k8s_install.preflight(opts, host)
        steps = k8s_install.plan(opts, group, flat)
        recorded = opts.to_dict()
        where = paths.K8S_SYNC_MANIFEST
        ask = not (yes or dry_run or as_json) and sys.stdin.isatty()
        preview = lambda: engine.install(steps, {}, {}, dry_run=True, progress=Style().progress, manifest_path=where)  # noqa: E731
        if ask and not _confirm(Style(), preview, "apply these changes?"):
            return Report("k8s-sync install")
        if dry_run:
            outcome = engine.install(steps, recorded, host.to_dict(), dry_run=True, progress=style.progress, manifest_path=where)
        else:
            with manifest.locked():
                outcome = engine.install(steps, recorded, host.to_dict(), progress=style.progress, manifest_path=where)
        report = from_outcome(outcome)
        report.command = "k8s-sync install"
        return report

    run("k8s-sync install", style, body, lambda r: print(
        ("would change" if r.dry_run else "changed") if r.changed else "nothing to change: the host is already as asked"))


def uninstall(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed; change nothing."),
    force: bool = typer.Option(False, "--force", help="With a damaged manifest: revert what it proves, list the rest."),
    yes: bool = YES, as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Stop k8s-sync and undo exactly what its install recorded; an agent installed by hostagent stays."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        import os

        from hostagent import engine, manifest
        from hostagent.host import paths

        if os.geteuid() != 0 and not dry_run:
            raise InputError("hostagent k8s-sync uninstall must run as root")
        where = paths.K8S_SYNC_MANIFEST
        ask = not (yes or dry_run or as_json) and sys.stdin.isatty()
        preview = lambda: engine.uninstall(dry_run=True, force=force, progress=Style().progress, manifest_path=where)  # noqa: E731
        if ask and not _confirm(Style(), preview, "remove all of this?"):
            return Report("k8s-sync uninstall")
        if dry_run:
            outcome = engine.uninstall(dry_run=True, force=force, progress=style.progress, manifest_path=where)
        else:
            with manifest.locked():
                outcome = engine.uninstall(force=force, progress=style.progress, manifest_path=where)
        report = from_outcome(outcome)
        report.command = "k8s-sync uninstall"
        return report

    run("k8s-sync uninstall", style, body,
        lambda r: print("\n".join(r.notes) or ("removed" if r.changed else "nothing to remove")))


def status(as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG) -> None:
    """What k8s-sync's manifest says is installed, and any drift of the host from it (exit 1 on drift)."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        from hostagent.host import paths
        from hostagent.status import status as read_status

        data = read_status(paths.K8S_SYNC_MANIFEST)
        return Report("k8s-sync status", data=data, exit_code=1 if data["drift"] else 0,
                      error=f"{len(data['drift'])} drift problem(s)" if data["drift"] else None)

    run("k8s-sync status", style, body, lambda r: print_status(r, "k8s-sync "))


def register(parent: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command()(install)
    app.command()(uninstall)
    app.command()(status)
    parent.add_typer(app, name="k8s-sync")
