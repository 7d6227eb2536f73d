"""`hostagent detect` and `hostagent group-config`; typer only at import time, the rest on call."""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import typer

def _fail(command: str, exc: Exception, as_json: bool) -> None:
    """One line on stderr (and a JSON error object with --json), exit with the error's code."""
    code = int(getattr(exc, "exit_code", 1))
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if as_json:
        import json

        # Same shape as hostagent.cli's failures.
        print(json.dumps({"command": command, "ok": False, "changed": False, "error": message, "exit_code": code}))
    print(f"hostagent {command}: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _run(command: str, as_json: bool, body: Callable[[], None]) -> None:
    from hostagent.errors import HostagentError

    try:
        body()
    except HostagentError as exc:
        _fail(command, exc, as_json)


def detect(
    netns: Optional[str] = typer.Option(None, "--netns", help="Inspect this named netns (ip netns) instead of this one."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    inner: bool = typer.Option(False, "--inner", help="Also recommend inner-netns capture, with its memory cost."),
    ring_blocks: int = typer.Option(128, "--ring-blocks", help="AF_PACKET ring blocks (1 MiB each) per netns."),
    other_netns: bool = typer.Option(True, "--other-netns/--no-other-netns",
                                     help="Look into named and per-process netns for pod-side links."),
) -> None:
    """Classify the host's NIC layout (CNI) from one netlink dump and recommend capture settings."""

    def body() -> None:
        from hostagent.netlayout import detect_layout, render_layout

        layout = detect_layout(netns, scan_other_netns=other_netns, inner=inner, ring_blocks=ring_blocks)
        if as_json:
            import json

            print(json.dumps(layout.to_dict()))
        else:
            print(render_layout(layout))

    _run("detect", as_json, body)


def group_config(
    netns: Optional[str] = typer.Option(None, "--netns", help="Detect in this named netns."),
    schema: str = typer.Option("nested", "--schema", help="nested (v6.6+ server) or legacy (flat, up to v6.5)."),
    interface_regex: Optional[str] = typer.Option(None, "--interface-regex", help="Override the recommended regex."),
    capture_mode: Optional[int] = typer.Option(None, "--capture-mode", help="0 local, 1 virtual mirror (default: as detected)."),
    inner: bool = typer.Option(False, "--inner", help="Enable inner-netns capture (ring blocks per netns)."),
    ring_blocks: int = typer.Option(128, "--ring-blocks", help="AF_PACKET ring blocks (1 MiB each) per netns."),
    lb: Optional[str] = typer.Option(None, "--lb", help="Load balancer address: sets both controller and ingester IP."),
    controller_ip: Optional[str] = typer.Option(None, "--controller-ip", help="proxy_controller_ip (the LB)."),
    controller_port: Optional[int] = typer.Option(None, "--controller-port", help="Controller port on the LB (30035)."),
    ingester_ip: Optional[str] = typer.Option(None, "--ingester-ip", help="ingester_ip (the LB)."),
    ingester_port: Optional[int] = typer.Option(None, "--ingester-port", help="Data port on the LB (30033)."),
    max_millicpus: Optional[int] = typer.Option(None, "--max-millicpus", help="global.limits.max_millicpus"),
    max_memory: Optional[int] = typer.Option(None, "--max-memory", help="global.limits.max_memory (MiB)"),
    group_id: Optional[str] = typer.Option(None, "--group-id", help="vtap_group_id for --schema legacy."),
    apply: bool = typer.Option(False, "--apply", help="Push the config to the server's agent group."),
    server: Optional[str] = typer.Option(None, "--server", help="deepflow-server HOST[:PORT] (API port 30417)."),
    agent_group: Optional[str] = typer.Option(None, "--agent-group", help="Group name or g-XXXXXXXXXX for --apply."),
    create_group: bool = typer.Option(False, "--create-group", help="With --apply: create the group if missing."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per server request."),
    other_netns: bool = typer.Option(True, "--other-netns/--no-other-netns", help="Look into other netns."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print the agent-group config for this host's layout (YAML), or --apply it to a server."""

    def body() -> None:
        from hostagent import groupapi, groupconfig
        from hostagent.errors import InputError
        from hostagent.netlayout import detect_layout

        if lb is not None and (controller_ip is not None or ingester_ip is not None):
            raise InputError("--lb sets both IPs; do not combine it with --controller-ip/--ingester-ip")
        opts = groupconfig.GroupConfigOptions(
            schema=schema, interface_regex=interface_regex, capture_mode=capture_mode, inner=inner,
            ring_blocks=ring_blocks, controller_ip=lb if lb is not None else controller_ip,
            controller_port=controller_port, ingester_ip=lb if lb is not None else ingester_ip,
            ingester_port=ingester_port, max_millicpus=max_millicpus, max_memory=max_memory, group_id=group_id,
        )
        groupconfig.validate(opts)
        if apply:
            if not server or not agent_group:
                raise InputError("--apply needs --server and --agent-group")
            if schema != "nested":
                raise InputError("--apply talks to the v6.6+ API, which takes only --schema nested")
            groupapi.server_base(server)
        layout = detect_layout(netns, scan_other_netns=other_netns, inner=inner, ring_blocks=ring_blocks)
        config = groupconfig.build(layout, opts)
        text = groupconfig.to_yaml(config, f"hostagent group-config: layout {layout.verdict}")
        applied: Optional[dict[str, Any]] = None
        if apply:
            assert server is not None and agent_group is not None
            applied = groupapi.apply_group_config(server, agent_group, text, create=create_group,
                                                  timeout=timeout).to_dict()
        if as_json:
            import json

            print(json.dumps({"command": "group-config", "ok": True, "changed": bool(applied and applied["changed"]), "schema": schema, "layout": layout.verdict,
                              "config": config, "yaml": text, "applied": applied}))
            return
        if applied and not applied["changed"]:
            print(f"agent group {applied['group_id']} already has this config", file=sys.stderr)
        elif applied:
            verb = "updated" if applied["config_existed"] else "created"
            made = " (group created)" if applied["group_created"] else ""
            print(f"{verb} the config of agent group {applied['group_id']}{made}", file=sys.stderr)
        sys.stdout.write(text)

    _run("group-config", as_json, body)


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
    app.command("group-config")(group_config)
