"""Agent-group config from a detected layout, for one DeepFlow server version: the nested schema
(v6.6.9 on) or the legacy flat one (older servers).

The server rejects a key its template lacks and checks YAML types only; neither it nor the agent checks
ranges (see hostagent.deepflow.keys). So every config is checked here against the key table of the
target server (`--server-version`, or the template a live server serves) for keys, types, ranges and
enums, its interface regexes in the agent's Rust dialect, and written as YAML that go-yaml v3 types
as meant (hostagent.deepflow.yaml12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from hostagent.deepflow import keys
from hostagent.deepflow.keys import KeyTable
from hostagent.errors import InputError
from hostagent.net.model import Layout

# Controller (gRPC, registration) and ingester (data) ports; some DeepFlow docs swap these two.
from hostagent.options import AGENT_GROUP_ID, CONTROLLER_PORT, INGESTER_PORT, parse_ip

NEWEST = keys.SERVER_VERSIONS[-1]  # the default target: the newest released server with a table


@dataclass(frozen=True)
class GroupConfigOptions:
    """What the user asked for on top of the detected layout; None means "as recommended"/"unset"."""

    schema: Optional[str] = None  # "nested" or "legacy"; None: the one the server version takes
    server_version: str = NEWEST
    interface_regex: Optional[str] = None
    capture_mode: Optional[int] = None
    inner: bool = False
    ring_blocks: int = 128
    controller_ip: Optional[str] = None
    controller_port: Optional[int] = None
    ingester_ip: Optional[str] = None
    ingester_port: Optional[int] = None
    max_millicpus: Optional[int] = None
    max_memory: Optional[int] = None
    group_id: Optional[str] = None  # legacy schema only: vtap_group_id

    @property
    def resolved_schema(self) -> str:
        if self.schema is not None:
            return self.schema
        return "nested" if _at_least(self.server_version, keys.NESTED_FROM) else "legacy"


def _at_least(version: str, floor: str) -> bool:
    return version == "main" or keys.parse_version(version) >= keys.parse_version(floor)


def table_for(opts: GroupConfigOptions) -> KeyTable:
    """The key table of the target server version, in the options' schema."""
    try:
        return keys.table_for(opts.server_version, opts.resolved_schema)
    except ValueError as exc:
        raise InputError(f"--server-version {opts.server_version}: {exc}") from None


def check_regex(flag: str, pattern: str) -> None:
    """Refuse a regex the agent's Rust regex crate would reject (it then rejects its whole config)."""
    from hostagent.deepflow.rustregex import check_agent_regex

    try:
        check_agent_regex(pattern)
    except ValueError as exc:
        raise InputError(f"{flag}: {one_line_text(str(exc))}") from None


def one_line_text(text: str) -> str:
    return " ".join(text.split())


def _check_host(flag: str, value: str) -> str:
    """The server hands these to agents as IP addresses (proxy_controller_ip, ingester_ip)."""
    return str(parse_ip(value, flag))


def _check_port(flag: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise InputError(f"{flag}: port {value} is outside [1, 65535]")
    return value


def validate(opts: GroupConfigOptions) -> None:
    """Reject bad input before anything is built or sent (ranges of emitted keys: see build)."""
    try:
        if opts.server_version != "main":
            keys.parse_version(opts.server_version)
    except ValueError as exc:
        raise InputError(f"--server-version: {exc}") from None
    if opts.schema not in (None, "nested", "legacy"):
        raise InputError(f"--schema must be nested or legacy, got {opts.schema!r}")
    if opts.schema == "nested" and not _at_least(opts.server_version, keys.NESTED_FROM):
        raise InputError(f"--schema nested: server v{opts.server_version} has no nested schema (from "
                         f"v{keys.NESTED_FROM}); use --schema legacy")
    if opts.capture_mode is not None and opts.capture_mode not in (0, 1):
        raise InputError("--capture-mode must be 0 (local) or 1 (virtual mirror); 2 is Enterprise-only")
    if opts.interface_regex is not None:
        check_regex("--interface-regex", opts.interface_regex)
    if not 8 <= opts.ring_blocks <= 1_000_000:
        raise InputError(f"--ring-blocks {opts.ring_blocks} is outside [8, 1000000]")
    for flag, host in (("--controller-ip", opts.controller_ip), ("--ingester-ip", opts.ingester_ip)):
        if host is not None:
            _check_host(flag, host)
    for flag, port in (("--controller-port", opts.controller_port), ("--ingester-port", opts.ingester_port)):
        if port is not None:
            _check_port(flag, port)
    if opts.resolved_schema == "legacy":
        if opts.inner:
            raise InputError("inner-netns capture has no key in the legacy flat schema (servers before "
                             f"v{keys.NESTED_FROM}); it needs v6.6.9.2504 or v7.0.3 and --schema nested")
        if opts.group_id is None:
            raise InputError("the legacy flat schema needs --group-id g-XXXXXXXXXX (the file's vtap_group_id), "
                             "or --apply with --agent-group")
    if opts.group_id is not None and not AGENT_GROUP_ID.fullmatch(opts.group_id):
        raise InputError(f"--group-id {opts.group_id!r} must be g- followed by 10 letters or digits")


def _settings(layout: Layout, opts: GroupConfigOptions) -> dict[str, Any]:
    """Schema-neutral settings: the recommendation with the user's overrides."""
    rec = layout.recommendation
    inner = None
    if opts.inner:
        inner = rec.inner_capture
        if inner is None or inner["ring_blocks"] != opts.ring_blocks:
            from hostagent.net.recommend import inner_capture

            inner = inner_capture(list(layout.other_netns), opts.ring_blocks)
    return {
        "interface_regex": opts.interface_regex if opts.interface_regex is not None else rec.interface_regex,
        "capture_mode": opts.capture_mode if opts.capture_mode is not None else rec.capture_mode,
        "inner": inner,
    }


def build(layout: Layout, opts: GroupConfigOptions, table: Optional[KeyTable] = None) -> dict[str, Any]:
    """The group config as data, in the requested schema, checked against the target's key table (the
    server's own template when given, else the table of opts.server_version)."""
    validate(opts)
    s = _settings(layout, opts)
    config = _build_legacy(s, opts) if opts.resolved_schema == "legacy" else _build_nested(s, opts)
    check(config, table or table_for(opts))
    return config


def check(config: dict[str, Any], table: KeyTable) -> None:
    """Refuse (exit 2, one line) what the target server or the agent would reject or misread: unknown keys
    (with the first version that has them), types, ranges, enums, and regexes in the agent's dialect."""
    problems = keys.check(config, table)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}")
    for path in ("inputs.cbpf.af_packet.interface_regex", "inputs.cbpf.af_packet.inner_interface_regex",
                 "tap_interface_regex"):
        value = _get(config, path)
        if isinstance(value, str):
            check_regex(path, value)


def _get(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _port(given: Optional[int], address: Optional[str], default: int) -> Optional[int]:
    """The port to write: the given one, the default next to an address, else none."""
    if given is not None:
        return given
    return default if address is not None else None


def _build_nested(s: dict[str, Any], opts: GroupConfigOptions) -> dict[str, Any]:
    af_packet: dict[str, Any] = {"interface_regex": s["interface_regex"]}
    inner = s["inner"]
    if inner:
        af_packet["inner_interface_capture_enabled"] = True
        af_packet["inner_interface_regex"] = inner["inner_interface_regex"]
        af_packet["tunning"] = {"ring_blocks_enabled": True, "ring_blocks": inner["ring_blocks"]}
    config: dict[str, Any] = {}
    communication: dict[str, Any] = {}
    # Unset addresses stay out: the server fills them in with its own controller/TSDB IPs.
    if opts.controller_ip is not None:
        communication["proxy_controller_ip"] = _check_host("--controller-ip", opts.controller_ip)
    # With a load balancer address the ports are written out too, so the file says which is
    # which: 30035 controller, 30033 data (a DeepFlow doc page has them the other way round).
    port = _port(opts.controller_port, opts.controller_ip, CONTROLLER_PORT)
    if port is not None:
        communication["proxy_controller_port"] = port
    if opts.ingester_ip is not None:
        communication["ingester_ip"] = _check_host("--ingester-ip", opts.ingester_ip)
    port = _port(opts.ingester_port, opts.ingester_ip, INGESTER_PORT)
    if port is not None:
        communication["ingester_port"] = port
    limits = {k: v for k, v in (("max_millicpus", opts.max_millicpus), ("max_memory", opts.max_memory))
              if v is not None}
    if communication or limits:
        config["global"] = {}
        if communication:
            config["global"]["communication"] = communication
        if limits:
            config["global"]["limits"] = limits
    config["inputs"] = {"cbpf": {"common": {"capture_mode": s["capture_mode"]}, "af_packet": af_packet}}
    return config


def _build_legacy(s: dict[str, Any], opts: GroupConfigOptions) -> dict[str, Any]:
    config: dict[str, Any] = {
        "vtap_group_id": opts.group_id,
        "tap_interface_regex": s["interface_regex"],
        "tap_mode": s["capture_mode"],
    }
    if opts.controller_ip is not None:
        config["proxy_controller_ip"] = _check_host("--controller-ip", opts.controller_ip)
    port = _port(opts.controller_port, opts.controller_ip, CONTROLLER_PORT)
    if port is not None:
        config["proxy_controller_port"] = port
    if opts.ingester_ip is not None:
        config["analyzer_ip"] = _check_host("--ingester-ip", opts.ingester_ip)
    port = _port(opts.ingester_port, opts.ingester_ip, INGESTER_PORT)
    if port is not None:
        config["analyzer_port"] = port
    if opts.max_millicpus is not None:
        config["max_millicpus"] = opts.max_millicpus
    if opts.max_memory is not None:
        config["max_memory"] = opts.max_memory
    return config


def to_yaml(config: dict[str, Any], header: str = "") -> str:
    """YAML that go-yaml v3 (the server) and YAML 1.2 readers type as the data says."""
    from hostagent.deepflow import yaml12

    return (f"# {header}\n" if header else "") + yaml12.dump(config)
