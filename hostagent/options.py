"""Settings: one table from which install's flags, config-file keys, defaults and help are derived
(and against which the Ansible module's argument spec is checked); every value validated before
anything runs. Also the one grammar for --server and the one place for each name pattern."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, Optional

from hostagent import caps
from hostagent.errors import InputError
from hostagent.host import paths

CLUSTER_ID = re.compile(r"[0-9a-zA-Z][-0-9a-zA-Z]{0,31}")
AGENT_GROUP_ID = re.compile(r"g-[0-9A-Za-z]{10}")
AGENT_GROUP_NAME = re.compile(r"[^\x00-\x1f/?#]{1,64}")
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,30}")
HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
# Domain names in DeepFlow are free text, but never need control characters or YAML/shell specials.
DOMAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The agent's team-id: the short id of a DeepFlow team (multi-tenant servers), sent with each sync.
TEAM_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")

CONTROLLER_PORT = 30035  # the agent's controller (gRPC) port on the server's NodePort
INGESTER_PORT = 30033  # the agent's data port
API_PORT = 30417  # deepflow-server's HTTP API (deepflow-ctl --api-port)


class Setting(NamedTuple):
    name: str  # snake_case: the InstallOptions field and the Ansible option; config files spell it with dashes
    flag: str
    type: str  # str | int | float | list
    default: Any
    help: str

    @property
    def help_text(self) -> str:
        return f"{self.help} [default: {self.default}]" if self.default not in (None, ()) else self.help


INSTALL_SETTINGS: tuple[Setting, ...] = (
    Setting("controller_ips", "--controller-ip", "list", (),
            "deepflow-server controller IP or host name (repeatable, required; one address family)."),
    Setting("controller_port", "--controller-port", "int", CONTROLLER_PORT, "Controller port."),
    Setting("agent_binary", "--agent-binary", "str", paths.AGENT_BINARY, "Agent binary to install (default: the one already there)."),
    Setting("cluster_id", "--cluster-id", "str", None, "kubernetes-cluster-id to write."),
    Setting("watcher_domain", "--watcher-domain", "str", None, "Look the cluster id up from this watcher Domain (needs --server)."),
    Setting("server", "--server", "str", None, f"deepflow-server API [http[s]://]HOST[:PORT] (port {API_PORT} unless given)."),
    Setting("domain_timeout", "--domain-timeout", "float", 120.0, "Seconds to wait for the watcher Domain to appear."),
    Setting("agent_group", "--agent-group", "str", None, "Agent group id g-XXXXXXXXXX (or a name, with --server) → vtap-group-id-request."),
    Setting("team_id", "--team-id", "str", None, "team-id for the agent's config: its team on a multi-tenant server."),
    Setting("org_id", "--org-id", "int", None, "Organization for API calls (X-Org-Id, 1-1024; the server's default: 1)."),
    Setting("user", "--user", "str", "deepflow", "System user the agent runs as."),
    Setting("caps", "--caps", "str", caps.DEFAULT_PROFILE,
            f"Capability profile ({', '.join(caps.PROFILES)}) or a list cap_a,cap_b."),
    Setting("cpu_millicores", "--cpu-millicores", "int", 1000,
            "CPU limit in millicores until the agent has its group config (then global.limits.max_millicpus rules)."),
    Setting("memory_mib", "--memory-mib", "int", 768,
            "Memory limit in MiB until the agent has its group config (then global.limits.max_memory rules)."),
    Setting("remote_upgrade", "--remote-upgrade", "str", "auto",
            f"allow: the server can upgrade the agent (its binary is {paths.AGENT_UPGRADABLE}, in a dir its user may "
            f"write); deny: the binary stays read-only at {paths.AGENT_BINARY} and remote upgrades fail; auto: allow, "
            "unless a dpkg/rpm package owns --agent-binary (deny: the package's upgrades keep reaching the agent) "
            "or the host is installed already (its mode)."),
    Setting("metrics_textfile", "--metrics-textfile", "str", None,
            "node_exporter textfile-collector directory: a systemd timer writes hostagent.prom there every minute "
            "(`hostagent doctor --prometheus`)."),
)
REMOTE_UPGRADE = ("auto", "allow", "deny")
SETTINGS = {s.name: s for s in INSTALL_SETTINGS}


def default(name: str) -> Any:
    return SETTINGS[name].default


@dataclass(frozen=True)
class InstallOptions:
    controller_ips: tuple[str, ...]
    controller_port: int = default("controller_port")
    agent_binary: str = default("agent_binary")
    cluster_id: Optional[str] = None
    watcher_domain: Optional[str] = None
    server: Optional[str] = None
    agent_group: Optional[str] = None
    team_id: Optional[str] = None
    org_id: Optional[int] = None
    user: str = default("user")
    caps: str = default("caps")
    cpu_millicores: int = default("cpu_millicores")
    memory_mib: int = default("memory_mib")
    domain_timeout: float = default("domain_timeout")
    remote_upgrade: str = default("remote_upgrade")
    metrics_textfile: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["controller_ips"] = list(self.controller_ips)
        return d


def one_line(name: str, value: str) -> str:
    """Refuse, never trim: control characters and surrounding whitespace mean a broken input."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InputError(f"{name} must be a single line without control characters")
    if value != value.strip():
        raise InputError(f"{name} {value!r} has surrounding whitespace")
    return value


IFACE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # what an IPv6 scope id may name: an interface


def parse_ip(value: str, name: str = "controller IP") -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address(one_line(name, value))
    except ValueError:
        raise InputError(f"malformed {name} {value!r}") from None
    scope = getattr(ip, "scope_id", None)
    if scope is not None and not IFACE_NAME.fullmatch(scope):
        raise InputError(f"{name} {value!r}: the scope id must be an interface name")
    return ip


def parse_controller(value: str) -> str:
    """A controller IP (normalized) or a DNS host name, which the agent resolves itself: the one
    grammar for install's and k8s-sync's --controller-ip (300.1.1.1 is neither)."""
    from hostagent.deepflow.names import is_hostname

    one_line("controller IP", value)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return str(parse_ip(value))
    if re.fullmatch(r"[0-9.]+", value) or ":" in value or not is_hostname(value):
        raise InputError(f"malformed controller IP or host name {value!r}")
    return value


def parse_controllers(raw: Any) -> list[str]:
    """--controller-ip, repeatable (a config file may give one string): at least one, each parsed."""
    values = [raw] if isinstance(raw, str) else list(raw or ())
    if not values:
        raise InputError("at least one --controller-ip is required")
    return [parse_controller(as_str("--controller-ip", value)) for value in values]


def parse_cluster_id(value: Any) -> str:
    cluster_id = as_str("--cluster-id", value)
    if not CLUSTER_ID.fullmatch(cluster_id):
        raise InputError(f"invalid cluster id {cluster_id!r} (want ^{CLUSTER_ID.pattern}$)")
    return cluster_id


def parse_team_id(value: Any) -> str:
    team_id = as_str("--team-id", value)
    if not TEAM_ID.fullmatch(team_id):
        raise InputError(f"invalid team id {team_id!r} (want ^{TEAM_ID.pattern}$, the team's short id)")
    return team_id


ORG_ID_MAX = 1024  # DeepFlow's organizations are numbered 1-1024 (1: the default one)


def parse_org_id(value: Any) -> int:
    org = as_int("--org-id", value)
    if not 1 <= org <= ORG_ID_MAX:
        raise InputError(f"--org-id {org} is outside [1, {ORG_ID_MAX}]")
    return org


def is_name(controller: str) -> bool:
    """A validated controller entry that is a host name rather than an IP."""
    try:
        ipaddress.ip_address(controller)
    except ValueError:
        return True
    return False


def parse_port(name: str, value: Any) -> int:
    port = as_int(name, value)
    if not 0 < port < 65536:
        raise InputError(f"{name} out of range: {port} (1-65535)")
    return port


class ServerAddress(NamedTuple):
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_server(value: str) -> ServerAddress:
    """The one --server grammar: [http[s]://]HOST[:PORT] or [V6][:PORT]; the port defaults to 30417."""
    one_line("--server", value)
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "http", value
    rest = rest[:-1] if rest.endswith("/") else rest
    if scheme not in ("http", "https") or not rest or "/" in rest:
        raise InputError(f"malformed --server {value!r} (want [http[s]://]HOST[:PORT])")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", rest)
    port: Optional[str]
    if m:
        host, port = m.group(1), m.group(2)
        _ipv6(host, value)
    elif rest.count(":") > 1:  # bare IPv6 without port
        host, port = rest, None
        _ipv6(host, value)
    else:
        host, _, port = rest.partition(":")
        port = port if _ else None
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not HOST_NAME.fullmatch(host):
                raise InputError(f"malformed --server host {host!r}") from None
    if port is not None and not (port.isascii() and port.isdigit()):
        raise InputError(f"malformed --server port {port!r}")
    return ServerAddress(scheme, host, API_PORT if port is None else parse_port("--server port", port))


def _ipv6(host: str, value: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise InputError(f"malformed --server {value!r}") from None


def as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer")
    if isinstance(value, int):
        return value
    text = str(value)
    if not re.fullmatch(r"-?[0-9]+", text):
        raise InputError(f"{name} must be an integer, got {value!r}")
    return int(text)


def as_float(name: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
        raise InputError(f"{name} must be a number of seconds, got {value!r}")
    return float(value)


def as_str(name: str, value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InputError(f"{name} must be a string, got {type(value).__name__}")
    return one_line(name, str(value))


def build(values: dict[str, Any], file_values: Optional[dict[str, Any]] = None) -> InstallOptions:
    """Merge file values under flag values (None = flag not given) and validate everything."""
    return validate(merge(values, file_values, INSTALL_SETTINGS))


def merge(values: dict[str, Any], file_values: Optional[dict[str, Any]], table: tuple[Setting, ...]) -> dict[str, Any]:
    """Config-file values (keys as the flags, without --) under flag values; unknown keys refused."""
    names = {s.name for s in table}
    merged: dict[str, Any] = {}
    for key, value in (file_values or {}).items():
        name = str(key).replace("-", "_")
        if name == "controller_ip":
            name = "controller_ips"
        if name not in names:
            known = ", ".join(sorted(s.flag[2:] for s in table))
            raise InputError(f"unknown key {key!r} in config file (known: {known})")
        merged[name] = value
    for key, value in values.items():
        if value not in (None, (), []):
            merged[key] = value
    return merged


def validate(v: dict[str, Any]) -> InstallOptions:
    ips = parse_controllers(v.get("controller_ips"))
    if len({ipaddress.ip_address(ip).version for ip in ips if not is_name(ip)}) > 1:
        raise InputError("controller IPs mix IPv4 and IPv6; the agent refuses that")
    controller_port = parse_port("--controller-port", v.get("controller_port", default("controller_port")))

    cluster_id = v.get("cluster_id")
    watcher_domain = v.get("watcher_domain")
    server = v.get("server")
    if cluster_id is not None:
        cluster_id = parse_cluster_id(cluster_id)
    if cluster_id and watcher_domain:
        raise InputError("give --cluster-id or --watcher-domain, not both")
    if watcher_domain is not None:
        watcher_domain = as_str("--watcher-domain", watcher_domain)
        if not DOMAIN_NAME.fullmatch(watcher_domain):
            raise InputError(f"invalid watcher domain name {watcher_domain!r}")
        if not server:
            raise InputError("--watcher-domain needs --server HOST[:PORT] to look the domain up")
    if server is not None:
        server = as_str("--server", server)
        parse_server(server)

    agent_group = v.get("agent_group")
    if agent_group is not None:
        agent_group = as_str("--agent-group", agent_group)
        if not AGENT_GROUP_ID.fullmatch(agent_group):
            if not server:
                raise InputError(f"invalid agent group id {agent_group!r} (want g- and 10 letters/digits, or a group name with --server)")
            if not AGENT_GROUP_NAME.fullmatch(agent_group):
                raise InputError(f"--agent-group {agent_group!r}: expected a group name or g-XXXXXXXXXX")

    team_id = v.get("team_id")
    if team_id is not None:
        team_id = parse_team_id(team_id)
    org_id = v.get("org_id")
    if org_id is not None:
        org_id = parse_org_id(org_id)
        if not server:
            raise InputError("--org-id is for API calls: it needs --server")

    user = as_str("--user", v.get("user", default("user")))
    if not USER_NAME.fullmatch(user) or user == "root":
        raise InputError(f"invalid user name {user!r}")
    caps_spec = as_str("--caps", v.get("caps", default("caps")))
    caps.resolve(caps_spec)  # refuses unknown names now, before anything runs

    cpu = as_int("--cpu-millicores", v.get("cpu_millicores", default("cpu_millicores")))
    if not 1 <= cpu <= 1_000_000:
        raise InputError(f"--cpu-millicores out of range: {cpu}")
    mem = as_int("--memory-mib", v.get("memory_mib", default("memory_mib")))
    if not 16 <= mem <= 1 << 20:
        raise InputError(f"--memory-mib out of range: {mem} (16 MiB or more)")
    binary = as_str("--agent-binary", v.get("agent_binary", default("agent_binary")))
    if not binary.startswith("/"):
        raise InputError(f"--agent-binary must be an absolute path: {binary!r}")
    timeout = as_float("--domain-timeout", v.get("domain_timeout", default("domain_timeout")))
    if not 0 <= timeout <= 3600:
        raise InputError("--domain-timeout must be between 0 and 3600 seconds")
    remote_upgrade = as_str("--remote-upgrade", v.get("remote_upgrade", default("remote_upgrade")))
    if remote_upgrade not in REMOTE_UPGRADE:
        raise InputError(f"--remote-upgrade must be auto, allow or deny, got {remote_upgrade!r}")
    metrics_textfile = v.get("metrics_textfile")
    if metrics_textfile is not None:
        metrics_textfile = as_str("--metrics-textfile", metrics_textfile)
        if not metrics_textfile.startswith("/"):
            raise InputError(f"--metrics-textfile must be an absolute path: {metrics_textfile!r}")
    return InstallOptions(
        controller_ips=tuple(ips), controller_port=controller_port, agent_binary=binary,
        cluster_id=cluster_id, watcher_domain=watcher_domain, server=server, agent_group=agent_group,
        team_id=team_id, org_id=org_id,
        user=user, caps=caps_spec, cpu_millicores=cpu, memory_mib=mem, domain_timeout=timeout,
        remote_upgrade=remote_upgrade, metrics_textfile=metrics_textfile,
    )


def load_config_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        data = yaml.safe_load(text)
    except OSError as e:
        raise InputError(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"config file {path} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise InputError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must be a YAML mapping of option names to values")
    return data


# `hostagent k8s-sync`: its own table, same rules (flags, config-file keys, defaults, help from here).
K8S_SYNC_INTERVAL = 60.0
K8S_SYNC_MAX_INTERVAL = 24 * 3600.0
# gRPC channel args are C ints (at most 2**31 - 1 bytes); the reporter's send limit is the message
# limit plus this headroom for the request's head, so the largest --max-message-mib is 2046.
GRPC_SEND_HEADROOM = 1 << 20
K8S_SYNC_MAX_MESSAGE_MIB = ((2**31 - 1) - GRPC_SEND_HEADROOM) >> 20
K8S_SYNC_SETTINGS: tuple[Setting, ...] = (
    Setting("controller_ips", "--controller-ip", "list", (), "deepflow-server controller IP or host name (repeatable, required)."),
    Setting("controller_port", "--controller-port", "int", CONTROLLER_PORT, "Controller gRPC port."),
    Setting("cluster_id", "--cluster-id", "str", None, "Kubernetes cluster id (default: ask the server by the apiserver CA's md5)."),
    Setting("team_id", "--team-id", "str", None, "Team (org) the cluster belongs to; empty = the default org."),
    Setting("kubeconfig", "--kubeconfig", "str", None, "kubeconfig file (default: the in-cluster service account)."),
    Setting("interval", "--interval", "float", K8S_SYNC_INTERVAL, "Seconds between full reports (at most 86400)."),
    Setting("tls", "--tls", "bool", False, "Talk TLS to the controllers (system CAs unless --tls-ca)."),
    Setting("tls_ca", "--tls-ca", "str", None, "CA file for the controllers' TLS (implies --tls)."),
    Setting("configmaps", "--configmaps", "bool", True, "Also report ConfigMaps (--no-configmaps to leave them out)."),
    Setting("max_message_mib", "--max-message-mib", "int", 100, "The server's grpc-max-message-length, in MiB: larger reports are cut."),
    Setting("user", "--user", "str", "deepflow-k8s", "System user the service runs as (install)."),
)
K8S_SYNC = {s.name: s for s in K8S_SYNC_SETTINGS}


@dataclass(frozen=True)
class K8sSyncOptions:
    controller_ips: tuple[str, ...]
    controller_port: int = CONTROLLER_PORT
    cluster_id: Optional[str] = None
    team_id: Optional[str] = None
    kubeconfig: Optional[str] = None
    interval: float = K8S_SYNC_INTERVAL
    tls: bool = False
    tls_ca: Optional[str] = None
    configmaps: bool = True
    user: str = "deepflow-k8s"
    max_message_mib: int = 100

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["controller_ips"] = list(self.controller_ips)
        return d


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise InputError(f"{name} must be true or false, got {value!r}")


def build_k8s_sync(values: dict[str, Any], file_values: Optional[dict[str, Any]] = None) -> K8sSyncOptions:
    merged = merge(values, file_values, K8S_SYNC_SETTINGS)
    hosts = parse_controllers(merged.get("controller_ips"))
    port = parse_port("--controller-port", merged.get("controller_port", CONTROLLER_PORT))
    cluster_id = merged.get("cluster_id")
    if cluster_id is not None:
        cluster_id = parse_cluster_id(cluster_id)
    team_id = merged.get("team_id")
    if team_id is not None:
        team_id = parse_team_id(team_id)
    paths_: dict[str, Optional[str]] = {}
    for name in ("kubeconfig", "tls_ca"):
        given = merged.get(name)
        path = None if given is None else as_str(K8S_SYNC[name].flag, given)
        if path is not None and not path.startswith("/"):
            raise InputError(f"{K8S_SYNC[name].flag} must be an absolute path: {path!r}")
        paths_[name] = path
    interval = as_float("--interval", merged.get("interval", K8S_SYNC_INTERVAL))
    if not 1 <= interval <= K8S_SYNC_MAX_INTERVAL:
        raise InputError(f"--interval out of range: {interval:g} (1 to {K8S_SYNC_MAX_INTERVAL:.0f} seconds)")
    user = as_str("--user", merged.get("user", "deepflow-k8s"))
    if not USER_NAME.fullmatch(user) or user == "root":
        raise InputError(f"invalid user name {user!r}")
    max_mib = as_int("--max-message-mib", merged.get("max_message_mib", 100))
    if not 1 <= max_mib <= K8S_SYNC_MAX_MESSAGE_MIB:
        raise InputError(f"--max-message-mib out of range: {max_mib} (1-{K8S_SYNC_MAX_MESSAGE_MIB}: gRPC's "
                         "message limits are C ints, and the send limit adds 1 MiB of headroom)")
    return K8sSyncOptions(tuple(hosts), port, cluster_id, team_id, paths_["kubeconfig"], interval,
                          _as_bool("--tls", merged.get("tls", False)), paths_["tls_ca"],
                          _as_bool("--configmaps", merged.get("configmaps", True)), user, max_mib)
