"""Install options: merged from --config-file and flags (flags win), validated before anything runs."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from hostagent import caps, paths
from hostagent.errors import InputError

CLUSTER_ID_RE = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z]{0,31}$")
AGENT_GROUP_ID_RE = re.compile(r"^g-[0-9A-Za-z]{10}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# Domain names in DeepFlow are free text, but never need control characters or YAML/shell specials.
DOMAIN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_API_PORT = 30417


@dataclass(frozen=True)
class InstallOptions:
    controller_ips: tuple[str, ...]
    controller_port: int = 30035
    agent_binary: str = paths.AGENT_BINARY
    cluster_id: Optional[str] = None
    watcher_domain: Optional[str] = None
    server: Optional[str] = None
    agent_group: Optional[str] = None
    user: str = "deepflow"
    caps: str = caps.DEFAULT_PROFILE
    cpu_millicores: int = 1000
    memory_mib: int = 768
    domain_timeout: float = 120.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["controller_ips"] = list(self.controller_ips)
        d.pop("extra")
        return d


# Keys accepted in --config-file; same names as the flags (kebab or snake case).
CONFIG_KEYS = {f.name for f in fields(InstallOptions)} - {"extra"}


def _one_line(name: str, value: str) -> str:
    if any(c in value for c in "\r\n\x00") or any(ord(c) < 32 for c in value):
        raise InputError(f"{name} must be a single line without control characters")
    return value


def parse_ip(value: str) -> ipaddress._BaseAddress:
    try:
        return ipaddress.ip_address(_one_line("controller IP", value.strip()))
    except ValueError:
        raise InputError(f"malformed controller IP {value!r}") from None


def parse_server(value: str) -> tuple[str, int]:
    """HOST[:PORT] or [V6]:PORT → (host, port); port defaults to the server API's 30417."""
    _one_line("--server", value)
    v = value.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", v)
    if m:
        host, port = m.group(1), m.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(f"malformed --server {value!r}") from None
    elif v.count(":") > 1:  # bare IPv6 without port
        host, port = v, None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(f"malformed --server {value!r}") from None
    else:
        host, _, port = v.partition(":")
        port = port or None
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not HOSTNAME_RE.match(host):
                raise InputError(f"malformed --server host {host!r}") from None
    port_num = DEFAULT_API_PORT if port is None else int(port)
    if not 0 < port_num < 65536:
        raise InputError(f"--server port out of range: {port}")
    return host, port_num


def server_url(value: str) -> str:
    host, port = parse_server(value)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer")
    try:
        return int(str(value).strip())
    except ValueError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None


def build(values: dict[str, Any], file_values: Optional[dict[str, Any]] = None) -> InstallOptions:
    """Merge file values under flag values (None = flag not given) and validate everything."""
    merged: dict[str, Any] = {}
    for key, value in (file_values or {}).items():
        name = str(key).replace("-", "_")
        if name == "controller_ip":
            name = "controller_ips"
        if name not in CONFIG_KEYS:
            raise InputError(f"unknown key {key!r} in config file (known: {', '.join(sorted(k.replace('_', '-') for k in CONFIG_KEYS))})")
        merged[name] = value
    for key, value in values.items():
        if value is not None and value != () and value != []:
            merged[key] = value
    return validate(merged)


def validate(v: dict[str, Any]) -> InstallOptions:
    ips_raw = v.get("controller_ips") or ()
    if isinstance(ips_raw, str):
        ips_raw = [ips_raw]
    if not ips_raw:
        raise InputError("at least one --controller-ip is required")
    ips = [parse_ip(str(ip)) for ip in ips_raw]
    if len({ip.version for ip in ips}) > 1:
        raise InputError("controller IPs mix IPv4 and IPv6; the agent refuses that")
    controller_port = _as_int("--controller-port", v.get("controller_port", 30035))
    if not 0 < controller_port < 65536:
        raise InputError(f"--controller-port out of range: {controller_port}")

    cluster_id = v.get("cluster_id")
    watcher_domain = v.get("watcher_domain")
    server = v.get("server")
    if cluster_id is not None:
        cluster_id = _one_line("--cluster-id", str(cluster_id))
        if not CLUSTER_ID_RE.match(cluster_id):
            raise InputError(f"invalid cluster id {cluster_id!r} (want ^[0-9a-zA-Z][-0-9a-zA-Z]{{0,31}}$)")
    if cluster_id and watcher_domain:
        raise InputError("give --cluster-id or --watcher-domain, not both")
    if watcher_domain is not None:
        watcher_domain = _one_line("--watcher-domain", str(watcher_domain))
        if not DOMAIN_NAME_RE.match(watcher_domain):
            raise InputError(f"invalid watcher domain name {watcher_domain!r}")
        if not server:
            raise InputError("--watcher-domain needs --server HOST[:PORT] to look the domain up")
    if server is not None:
        parse_server(str(server))

    agent_group = v.get("agent_group")
    if agent_group is not None:
        agent_group = _one_line("--agent-group", str(agent_group))
        if not AGENT_GROUP_ID_RE.match(agent_group) and not server:
            raise InputError(f"invalid agent group id {agent_group!r} (want g- and 10 letters/digits, or a group name with --server)")

    user = _one_line("--user", str(v.get("user", "deepflow")))
    if not USER_RE.match(user) or user == "root":
        raise InputError(f"invalid user name {user!r}")
    caps_spec = _one_line("--caps", str(v.get("caps", caps.DEFAULT_PROFILE)))
    caps.resolve(caps_spec)  # refuses unknown names now, before anything runs

    cpu = _as_int("--cpu-millicores", v.get("cpu_millicores", 1000))
    if not 1 <= cpu <= 1_000_000:
        raise InputError(f"--cpu-millicores out of range: {cpu}")
    mem = _as_int("--memory-mib", v.get("memory_mib", 768))
    if not 16 <= mem <= 1 << 20:
        raise InputError(f"--memory-mib out of range: {mem} (16 MiB or more)")
    binary = _one_line("--agent-binary", str(v.get("agent_binary", paths.AGENT_BINARY)))
    if not binary.startswith("/"):
        raise InputError(f"--agent-binary must be an absolute path: {binary!r}")
    timeout = float(v.get("domain_timeout", 120.0))
    if not 0 <= timeout <= 3600:
        raise InputError("--domain-timeout must be between 0 and 3600 seconds")
    return InstallOptions(
        controller_ips=tuple(str(ip) for ip in ips), controller_port=controller_port, agent_binary=binary,
        cluster_id=cluster_id, watcher_domain=watcher_domain, server=str(server) if server else None,
        agent_group=agent_group, user=user, caps=caps_spec, cpu_millicores=cpu, memory_mib=mem,
        domain_timeout=timeout,
    )


def load_config_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise InputError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InputError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must be a YAML mapping of option names to values")
    return data
