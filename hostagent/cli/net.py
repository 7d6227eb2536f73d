"""The network commands: `hostagent detect` and `hostagent group-config`."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Any, Optional

import typer

from hostagent.cli.agent import DEBUG, JSON, QUIET, VERBOSE
from hostagent.cli.output import Report, options, run
from hostagent.options import API_PORT, CONTROLLER_PORT, INGESTER_PORT

RING_BLOCKS = typer.Option(128, "--ring-blocks", help="AF_PACKET ring blocks (1 MiB each) per netns.")
OTHER_NETNS = typer.Option(True, "--other-netns/--no-other-netns",
                           help="Look into named and per-process netns for pod-side links.")


class Schema(str, Enum):
    nested = "nested"  # v6.6.9+ servers
    legacy = "legacy"  # the flat schema of servers before v6.6.9


def detect(
    netns: Optional[str] = typer.Option(None, "--netns", help="Inspect this named netns (ip netns) instead of this one."),
    inner: bool = typer.Option(False, "--inner", help="Also recommend inner-netns capture, with its memory cost."),
    ring_blocks: int = RING_BLOCKS, other_netns: bool = OTHER_NETNS,
    as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Classify the host's NIC layout (CNI) from one netlink dump and recommend capture settings."""
    from hostagent.cli import direct

    code = direct.detect(netns, inner, ring_blocks, other_netns, as_json, quiet, verbose, debug)
    if code:
        raise typer.Exit(code)


def group_config(
    netns: Optional[str] = typer.Option(None, "--netns", help="Detect in this named netns."),
    server_version: Optional[str] = typer.Option(
        None, "--server-version", help="Target deepflow-server X.Y[.Z] (picks its key table; with --server its "
        "own template wins) [default: the newest known]."),
    schema: Optional[Schema] = typer.Option(
        None, "--schema", help="nested (v6.6.9+ servers) or legacy (flat, older servers) [default: as the "
        "server version takes]."),
    interface_regex: Optional[str] = typer.Option(None, "--interface-regex", help="Override the recommended regex."),
    capture_mode: Optional[int] = typer.Option(
        None, "--capture-mode", help="0 local or 1 virtual mirror (2, physical mirror, is Enterprise-only) [default: as detected]."),
    inner: bool = typer.Option(
        False, "--inner", help="Enable inner-netns capture (ring blocks per netns; v6.6.9.2504/v7.0.3+, CAP_SYS_ADMIN)."),
    ring_blocks: int = RING_BLOCKS,
    lb: Optional[str] = typer.Option(None, "--lb", help="Load balancer address: sets both controller and ingester IP."),
    controller_ip: Optional[str] = typer.Option(None, "--controller-ip", help="proxy_controller_ip (the LB)."),
    controller_port: Optional[int] = typer.Option(None, "--controller-port", help=f"Controller port on the LB ({CONTROLLER_PORT})."),
    ingester_ip: Optional[str] = typer.Option(None, "--ingester-ip", help="ingester_ip (the LB)."),
    ingester_port: Optional[int] = typer.Option(None, "--ingester-port", help=f"Data port on the LB ({INGESTER_PORT})."),
    max_millicpus: Optional[int] = typer.Option(None, "--max-millicpus", help="global.limits.max_millicpus [1, 100000]"),
    max_memory: Optional[int] = typer.Option(None, "--max-memory", help="global.limits.max_memory, MiB [128, 100000]"),
    group_id: Optional[str] = typer.Option(None, "--group-id", help="vtap_group_id for the legacy schema (with --apply: the group's)."),
    apply: bool = typer.Option(False, "--apply", help="Push the config to the server's agent group."),
    server: Optional[str] = typer.Option(None, "--server", help=f"deepflow-server [http[s]://]HOST[:PORT] (API port {API_PORT})."),
    agent_group: Optional[str] = typer.Option(None, "--agent-group", help="Group name or g-XXXXXXXXXX for --apply."),
    create_group: bool = typer.Option(False, "--create-group", help="With --apply: create the group if missing."),
    org_id: Optional[int] = typer.Option(None, "--org-id", help="Organization for API calls (X-Org-Id) [default: 1]."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per server request."),
    other_netns: bool = OTHER_NETNS,
    as_json: bool = JSON, quiet: bool = QUIET, verbose: bool = VERBOSE, debug: bool = DEBUG,
) -> None:
    """Print the agent-group config for this host's layout (YAML), checked against the target server
    version (or the live server's own template), or --apply it to a server."""
    style = options(as_json, quiet, verbose, debug)

    def body() -> Report:
        import dataclasses

        from hostagent import options as settings
        from hostagent import server as deepflow
        from hostagent.deepflow import keys
        from hostagent.errors import InputError
        from hostagent.net.detect import detect_layout
        from hostagent.render import groupconfig

        if lb is not None and (controller_ip is not None or ingester_ip is not None):
            raise InputError("--lb sets both IPs; do not combine it with --controller-ip/--ingester-ip")
        org = settings.parse_org_id(org_id) if org_id is not None else 1
        opts = groupconfig.GroupConfigOptions(
            schema=schema.value if schema else None, server_version=server_version or groupconfig.NEWEST,
            interface_regex=interface_regex, capture_mode=capture_mode, inner=inner,
            ring_blocks=ring_blocks, controller_ip=lb if lb is not None else controller_ip,
            controller_port=controller_port, ingester_ip=lb if lb is not None else ingester_ip,
            ingester_port=ingester_port, max_millicpus=max_millicpus, max_memory=max_memory, group_id=group_id,
        )
        # With --apply the group's own id fills a legacy config's vtap_group_id.
        groupconfig.validate(dataclasses.replace(opts, group_id=opts.group_id or "g-0000000000") if apply else opts)
        if apply and (not server or not agent_group):
            raise InputError("--apply needs --server and --agent-group")
        if inner:
            check_inner_caps()
        table = None
        target = f"v{opts.server_version}"
        client = None
        if server:
            client = deepflow.Client.for_server(server, timeout, org)
            opts, table, target = _server_target(client, opts, server_version, keys, groupconfig, deepflow)
        layout = detect_layout(netns, scan_other_netns=other_netns, inner=inner, ring_blocks=ring_blocks)
        legacy_apply = apply and opts.resolved_schema == "legacy"
        if legacy_apply and opts.group_id is None:
            # Checked with a stand-in id first, so a refused config creates no group.
            groupconfig.build(layout, dataclasses.replace(opts, group_id="g-0000000000"), table)
        config = None if legacy_apply and opts.group_id is None else groupconfig.build(layout, opts, table)
        applied: Optional[dict[str, Any]] = None
        if apply:
            assert client is not None and agent_group is not None
            short, lcuuid, created = deepflow.group_short_id(client, agent_group, create_group)
            if opts.resolved_schema == "legacy":
                if opts.group_id is not None and opts.group_id != short:
                    raise InputError(f"--group-id {opts.group_id} is not the id of agent group {agent_group!r} ({short})")
                config = groupconfig.build(layout, dataclasses.replace(opts, group_id=short), table)
                text = groupconfig.to_yaml(config, f"hostagent group-config: layout {layout.verdict}")
                result = deepflow.apply_flat_config(client, short, lcuuid, created, config, text)
            else:
                assert config is not None
                text = groupconfig.to_yaml(config, f"hostagent group-config: layout {layout.verdict}")
                result = deepflow.apply_nested_config(client, short, lcuuid, created, text)
            applied = result.to_dict()
        assert config is not None
        text = groupconfig.to_yaml(config, f"hostagent group-config: layout {layout.verdict} (for {target})")
        return Report("group-config", changed=bool(applied and applied["changed"]),
                      data={"schema": opts.resolved_schema, "server_version": opts.server_version, "target": target,
                            "layout": layout.verdict, "config": config, "yaml": text, "applied": applied})

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


def _server_target(client: Any, opts: Any, given_version: Optional[str], keys: Any, groupconfig: Any,
                   deepflow: Any) -> tuple[Any, Any, str]:
    """(options, table, what was targeted) for a live server: its own template from v6.6.9 on; a server
    without the template route predates v6.6.9 and takes the flat schema."""
    import dataclasses

    from hostagent.deepflow.template import parse_template
    from hostagent.errors import InputError, ServerError

    old = given_version is not None and given_version != "main" and \
        keys.parse_version(given_version) < keys.parse_version(keys.NESTED_FROM)
    if old or opts.schema == "legacy":
        return opts, None, f"v{opts.server_version} (flat schema)"
    text = deepflow.server_template(client)
    if text is None:
        if opts.schema == "nested" or given_version is not None:
            raise InputError(f"{client.base} serves no agent-group template, so it is older than v{keys.NESTED_FROM} "
                             "and takes only the legacy flat schema (give --server-version of that server, e.g. 6.5.9)")
        version = keys.SERVER_VERSIONS[0]
        return dataclasses.replace(opts, server_version=version, schema="legacy"), None, \
            f"{client.base}: before v{keys.NESTED_FROM} (flat schema, v{version} table)"
    try:
        table = parse_template(text, ref=f"{client.base} server's")
    except ValueError as exc:
        raise ServerError(f"{client.base}: {exc}") from None
    return dataclasses.replace(opts, schema="nested"), table, f"the template of {client.base}"


def check_inner_caps() -> None:
    """Inner-netns capture setns()s into pod namespaces: CAP_SYS_ADMIN. Refuse when this host's installed
    agent (the manifest's caps step) runs without it."""
    from hostagent import caps
    from hostagent import manifest as manifest_mod
    from hostagent.errors import InputError

    manifest = manifest_mod.load()
    installed = next((e["params"]["caps"] for e in (manifest.entries if manifest else []) if e["kind"] == "caps"), None)
    if installed is None or "cap_sys_admin" in installed:
        return
    with_it = ", ".join(n for n, names in caps.PROFILES.items() if "cap_sys_admin" in names)
    raise InputError("--inner needs CAP_SYS_ADMIN (setns into pod namespaces), which this host's agent lacks "
                     f"(installed with {','.join(installed)}); re-install with --caps {with_it.split(', ')[0]} "
                     f"(profiles with it: {with_it}) or add cap_sys_admin to the list")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
    app.command("group-config")(group_config)
