"""Agent-group config from a detected layout: the v6.6+ nested schema, or the legacy flat one.

The server validates a group config against its template and rejects any key the
template lacks ("unexpected key in configuration: ..."), so only template keys are
written, and every config is checked against the template copy below first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from hostagent.errors import InputError
from hostagent.net.model import Layout

# Controller (gRPC, registration) and ingester (data) ports; some DeepFlow docs swap these two.
from hostagent.options import AGENT_GROUP_ID, CONTROLLER_PORT, INGESTER_PORT, parse_ip

# The template keys we may write (server/agent_config/template.yaml); values give the type.
NESTED_TEMPLATE: dict[str, Any] = {
    "global": {
        "communication": {
            "proxy_controller_ip": "127.0.0.1",
            "proxy_controller_port": CONTROLLER_PORT,
            "ingester_ip": "",
            "ingester_port": INGESTER_PORT,
        },
        "limits": {"max_millicpus": 1000, "max_memory": 768},
    },
    "inputs": {
        "cbpf": {
            "common": {"capture_mode": 0},
            "af_packet": {
                "interface_regex": "",
                "inner_interface_capture_enabled": False,
                "inner_interface_regex": "",
                "tunning": {"ring_blocks_enabled": False, "ring_blocks": 128},
            },
        }
    },
}
# The flat keys of server/agent_config/example.yaml (servers up to v6.5/v6.6).
LEGACY_TEMPLATE: dict[str, Any] = {
    "vtap_group_id": "",
    "max_millicpus": 1000,
    "max_memory": 768,
    "tap_interface_regex": "",
    "tap_mode": 0,
    "proxy_controller_ip": "",
    "proxy_controller_port": CONTROLLER_PORT,
    "analyzer_ip": "",
    "analyzer_port": INGESTER_PORT,
    "static_config": {"afpacket-blocks-enabled": False, "afpacket-blocks": 128},
}


@dataclass(frozen=True)
class GroupConfigOptions:
    """What the user asked for on top of the detected layout; None means "as recommended"/"unset"."""

    schema: str = "nested"  # or "legacy"
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


def _check_host(flag: str, value: str) -> str:
    """The server hands these to agents as IP addresses (proxy_controller_ip, ingester_ip)."""
    return str(parse_ip(value, flag))


def _check_port(flag: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise InputError(f"{flag}: port {value} is outside 1-65535")
    return value


def validate(opts: GroupConfigOptions) -> None:
    """Reject bad input before anything is built or sent."""
    if opts.schema not in ("nested", "legacy"):
        raise InputError(f"--schema must be nested or legacy, got {opts.schema!r}")
    if opts.capture_mode is not None and opts.capture_mode not in (0, 1):
        raise InputError("--capture-mode must be 0 (local) or 1 (virtual mirror); 2 is Enterprise-only")
    if opts.interface_regex is not None:
        try:
            re.compile(opts.interface_regex)
        except re.error as exc:
            raise InputError(f"--interface-regex {opts.interface_regex!r} is not a valid regex: {exc}") from None
    if not 8 <= opts.ring_blocks <= 1_000_000:
        raise InputError(f"--ring-blocks must be within [8, 1000000], got {opts.ring_blocks}")
    for flag, host in (("--controller-ip", opts.controller_ip), ("--ingester-ip", opts.ingester_ip)):
        if host is not None:
            _check_host(flag, host)
    for flag, port in (("--controller-port", opts.controller_port), ("--ingester-port", opts.ingester_port)):
        if port is not None:
            _check_port(flag, port)
    if opts.max_millicpus is not None and opts.max_millicpus < 1:
        raise InputError("--max-millicpus must be at least 1")
    if opts.max_memory is not None and opts.max_memory < 1:
        raise InputError("--max-memory (MiB) must be at least 1")
    if opts.schema == "legacy":
        if opts.inner:
            raise InputError("inner-netns capture has no key in the legacy schema; use --schema nested")
        if opts.group_id is None:
            raise InputError("--schema legacy needs --group-id g-XXXXXXXXXX (the file's vtap_group_id)")
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


def build(layout: Layout, opts: GroupConfigOptions) -> dict[str, Any]:
    """The group config as data, in the requested schema; checked against the template."""
    validate(opts)
    s = _settings(layout, opts)
    config = _build_legacy(s, opts) if opts.schema == "legacy" else _build_nested(s, opts)
    check_against_template(config, LEGACY_TEMPLATE if opts.schema == "legacy" else NESTED_TEMPLATE)
    return config


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
    limits = {k: v for k, v in (("max_millicpus", opts.max_millicpus), ("max_memory", opts.max_memory)) if v}
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
    if opts.max_millicpus:
        config["max_millicpus"] = opts.max_millicpus
    if opts.max_memory:
        config["max_memory"] = opts.max_memory
    return config


def check_against_template(config: Any, template: Any, path: str = "") -> None:
    """Mirror of the server's check: every key must exist in the template, with the same scalar type."""
    if isinstance(template, dict):
        if not isinstance(config, dict):
            raise InputError(f"{path or 'config'}: expected a mapping")
        for key, value in config.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in template:
                raise InputError(f"unexpected key in configuration: {where}")
            check_against_template(value, template[key], where)
        return
    if type(config) is not type(template):
        raise InputError(f"{path}: expected {type(template).__name__}, got {type(config).__name__}")


def to_yaml(config: dict[str, Any], header: str = "") -> str:
    import yaml

    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return (f"# {header}\n" if header else "") + body
