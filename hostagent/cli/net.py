"""The network commands: `hostagent detect` and `hostagent group-config`."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any, Optional

import typer

from hostagent.cli.agent import DEBUG, JSON, QUIET, VERBOSE
from hostagent.cli.output import Report, options, run
from hostagent.options import CONTROLLER_PORT, INGESTER_PORT

RING_BLOCKS = typer.Option(128, "--ring-blocks", help="AF_PACKET ring blocks (1 MiB each) per netns.")
OTHER_NETNS = typer.Option(True, "--other-netns/--no-other-netns",
                           help="Look into named and per-process netns for pod-side links.")


class Schema(str, Enum):
    nested = "nested"  # v6.6.9+ servers
    legacy = "legacy"  # the flat schema of servers up to v6.6


def detect(
    netns: Optional[str] = typer.Option(None, "--netns", help="Inspect this named netns (ip netns) instead of this one."),
    inner: bool = typer.Option(False, "--inner", help="Also recommend inner-netns capture, with its memory cost."),
    ring_blocks: int = RING_BLOCKS, other_netns: bool = OTHER_NETNS,
    as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Classify the host's NIC layout (CNI) from one netlink dump and recommend capture settings."""
    style = options(as_json, quiet, verbose, debug)
    found: list[Any] = []

    def body() -> Report:
        from hostagent.net.detect import detect_layout

        found.append(detect_layout(netns, scan_other_netns=other_netns, inner=inner, ring_blocks=ring_blocks))
        return Report("detect", data=found[0].to_dict())

    def human(r: Report) -> None:
        from hostagent.net.report import render_layout

        print(render_layout(found[0]))

    run("detect", style, body, human)


def group_config(
    netns: Optional[str] = typer.Option(None, "--netns", help="Detect in this named netns."),
    schema: Schema = typer.Option(Schema.nested, "--schema", help="nested (v6.6.9+ server) or legacy (flat, older servers)."),
    interface_regex: Optional[str] = typer.Option(None, "--interface-regex", help="Override the recommended regex."),
    capture_mode: Optional[int] = typer.Option(
        None, "--capture-mode", help="0 local or 1 virtual mirror (2, physical mirror, is Enterprise-only) [default: as detected]."),
    inner: bool = typer.Option(False, "--inner", help="Enable inner-netns capture (ring blocks per netns)."),
    ring_blocks: int = RING_BLOCKS,
    lb: Optional[str] = typer.Option(None, "--lb", help="Load balancer address: sets both controller and ingester IP."),
    controller_ip: Optional[str] = typer.Option(None, "--controller-ip", help="proxy_controller_ip (the LB)."),
    controller_port: Optional[int] = typer.Option(None, "--controller-port", help=f"Controller port on the LB ({CONTROLLER_PORT})."),
    ingester_ip: Optional[str] = typer.Option(None, "--ingester-ip", help="ingester_ip (the LB)."),
    ingester_port: Optional[int] = typer.Option(None, "--ingester-port", help=f"Data port on the LB ({INGESTER_PORT})."),
    max_millicpus: Optional[int] = typer.Option(None, "--max-millicpus", help="global.limits.max_millicpus"),
    max_memory: Optional[int] = typer.Option(None, "--max-memory", help="global.limits.max_memory (MiB)"),
    group_id: Optional[str] = typer.Option(None, "--group-id", help="vtap_group_id for --schema legacy."),
    apply: bool = typer.Option(False, "--apply", help="Push the config to the server's agent group."),
    server: Optional[str] = typer.Option(None, "--server", help="deepflow-server [http[s]://]HOST[:PORT] (API port 30417)."),
    agent_group: Optional[str] = typer.Option(None, "--agent-group", help="Group name or g-XXXXXXXXXX for --apply."),
    create_group: bool = typer.Option(False, "--create-group", help="With --apply: create the group if missing."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per server request."),
    other_netns: bool = OTHER_NETNS,
    as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Print the agent-group config for this host's layout (YAML), or --apply it to a server."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        from hostagent import options as settings
        from hostagent import server as deepflow
        from hostagent.errors import InputError
        from hostagent.net.detect import detect_layout
        from hostagent.render import groupconfig

        if lb is not None and (controller_ip is not None or ingester_ip is not None):
            raise InputError("--lb sets both IPs; do not combine it with --controller-ip/--ingester-ip")
        opts = groupconfig.GroupConfigOptions(
            schema=schema.value, interface_regex=interface_regex,
            capture_mode=capture_mode, inner=inner,
            ring_blocks=ring_blocks, controller_ip=lb if lb is not None else controller_ip,
            controller_port=controller_port, ingester_ip=lb if lb is not None else ingester_ip,
            ingester_port=ingester_port, max_millicpus=max_millicpus, max_memory=max_memory, group_id=group_id,
        )
        groupconfig.validate(opts)
        if apply:
            if not server or not agent_group:
                raise InputError("--apply needs --server and --agent-group")
            if schema is not Schema.nested:
                raise InputError("--apply talks to the v6.6.9+ API, which takes only --schema nested")
            settings.parse_server(server)
        layout = detect_layout(netns, scan_other_netns=other_netns, inner=inner, ring_blocks=ring_blocks)
        config = groupconfig.build(layout, opts)
        text = groupconfig.to_yaml(config, f"hostagent group-config: layout {layout.verdict}")
        applied: Optional[dict[str, Any]] = None
        if apply:
            assert server is not None and agent_group is not None
            applied = deepflow.apply_group_config(server, agent_group, text, create=create_group,
                                                  timeout=timeout).to_dict()
        return Report("group-config", changed=bool(applied and applied["changed"]),
                      data={"schema": schema.value, "layout": layout.verdict, "config": config, "yaml": text,
                            "applied": applied})

    def human(r: Report) -> None:
        data = r.data or {}
        applied = data["applied"]
        if applied and not applied["changed"]:
            print(f"agent group {applied['group_id']} already has this config", file=sys.stderr)
        elif applied:
            verb = "updated" if applied["config_existed"] else "created"
            made = " (group created)" if applied["group_created"] else ""
            print(f"{verb} the config of agent group {applied['group_id']}{made}", file=sys.stderr)
        sys.stdout.write(data["yaml"])

    run("group-config", style, body, human)


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
    app.command("group-config")(group_config)
