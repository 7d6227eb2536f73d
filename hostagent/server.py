"""The one deepflow-server HTTP client, and what hostagent asks of the server: the cluster id of a
watcher's Domain; agent groups and their config.

Routes and envelope as deepflow-ctl uses them: GET /v2/domains/, GET/POST /v1/vtap-groups/,
GET/POST/PUT /v1/agent-group-configuration/<lcuuid>/yaml and GET .../template/yaml (v6.6.9 on); before
v6.6.9 the flat schema: GET /v1/vtap-group-configuration/?vtap_group_id=, POST
/v1/vtap-group-configuration/advanced/, PATCH .../advanced/<config lcuuid>/; agents: GET /v1/vtaps/,
PATCH /v1/vtaps/<lcuuid>/ (VTAP_GROUP_LCUUID). Answers shaped {"OPT_STATUS", "DESCRIPTION", "DATA"}
(FAIL with HTTP 500 for a validation failure or a missing record). A call succeeds only with HTTP 200
and OPT_STATUS SUCCESS; X-Org-Id names the organization (default 1).
Every call has a response-size cap and a total deadline (connect, TLS, headers and body), follows no
redirect, and maps every transport failure to one ServerError line.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from hostagent import options
from hostagent.errors import InputError, RouteMissing, ServerError

# deepflow-ctl sends these on every request.
HEADERS = {"X-User-Id": "1", "X-User-Type": "1"}
MAX_RESPONSE = 16 << 20  # the largest answer hostagent reads (a group config is a few KiB)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise ServerError(f"deepflow-server answered HTTP {code} redirecting to {newurl}; hostagent follows no redirects")


class _Watchdog:
    """Shuts a call's socket down at its deadline: socket timeouts bound each read, not the call, so
    a server that trickles bytes (the headers too) would otherwise hold the call, and install's lock."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._timers: list[threading.Timer] = []

    def connection(self, cls: Any) -> Callable[..., Any]:
        def make(host: str, **kwargs: Any) -> Any:
            conn = cls(host, **kwargs)
            conn._create_connection = self._connect  # http.client's hook for opening the socket
            return conn
        return make

    def _connect(self, address: Any, timeout: Any = None, source_address: Any = None) -> socket.socket:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.fired = True
            raise socket.timeout("deadline")
        sock = socket.create_connection(address, left, source_address)
        timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._fire, (sock,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return sock

    def _fire(self, sock: socket.socket) -> None:
        self.fired = True
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read; close() would not
        except OSError:
            pass

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(watchdog.connection(http.client.HTTPConnection), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(watchdog.connection(http.client.HTTPSConnection), req)  # the default, verifying context

    return urllib.request.build_opener(_NoRedirect, HTTP, HTTPS)


@dataclass
class Client:
    base: str  # http(s)://HOST:PORT, from options.parse_server
    timeout: float = 10.0  # total seconds per call: connect, send and the whole answer
    org_id: int = 1

    @classmethod
    def for_server(cls, server: str, timeout: float = 10.0, org_id: int = 1) -> Client:
        return cls(options.parse_server(server).url, timeout, org_id)

    def _read(self, resp: Any, deadline: float, where: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise ServerError(f"deepflow-server at {self.base} timed out after {self.timeout:g}s ({where})")
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                if getattr(resp, "length", None):  # Content-Length promised more
                    raise ServerError(f"deepflow-server at {self.base} broke off {where}: {resp.length} bytes missing")
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_RESPONSE:
                raise ServerError(f"deepflow-server answer to {where} is larger than {MAX_RESPONSE >> 20} MiB; refusing it")
            chunks.append(chunk)

    def call(self, method: str, path: str, query: Optional[dict[str, str]] = None, body: Optional[bytes] = None,
             content_type: str = "application/json") -> Any:
        """DATA of the envelope; ServerError (one line) for anything but HTTP 200 + SUCCESS."""
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        where = f"{method} {path}"
        headers = dict(HEADERS, **{"X-Org-Id": str(self.org_id)})
        if body is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        deadline = time.monotonic() + self.timeout
        watchdog = _Watchdog(deadline)
        timed_out = ServerError(f"deepflow-server at {self.base} timed out after {self.timeout:g}s ({where})")
        try:
            try:
                with _opener(watchdog).open(request, timeout=self.timeout) as resp:
                    status, raw = resp.status, self._read(resp, deadline, where)
            except urllib.error.HTTPError as exc:
                status, raw = exc.code, self._read(exc, deadline, where)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if watchdog.fired or isinstance(reason, (socket.timeout, TimeoutError)):
                raise timed_out from None
            raise ServerError(f"cannot reach deepflow-server at {self.base}: {getattr(reason, 'strerror', None) or reason}") from None
        except (socket.timeout, TimeoutError):
            raise timed_out from None
        except (http.client.HTTPException, OSError, ServerError) as exc:
            if watchdog.fired:  # the answer was cut at the deadline, whatever broke first
                raise timed_out from None
            if isinstance(exc, ServerError):
                raise
            raise ServerError(f"deepflow-server at {self.base} broke off {where}: {type(exc).__name__}") from None
        finally:
            watchdog.cancel()
        if watchdog.fired:  # shut down at the deadline: what was read may be cut short
            raise timed_out
        try:
            envelope = json.loads(raw)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "OPT_STATUS" not in envelope:
            if status == 404:
                raise RouteMissing(f"deepflow-server at {self.base} has no route {where} (HTTP 404)")
            first = (raw.decode("utf-8", "replace").strip().splitlines() or [""])[0][:200]
            raise ServerError(f"deepflow-server answered HTTP {status} to {where}, not a deepflow answer: {first!r}")
        if status != 200 or envelope["OPT_STATUS"] != "SUCCESS":
            desc = str(envelope.get("DESCRIPTION") or "").strip().splitlines()[:1]
            raise ServerError(f"deepflow-server refused: {envelope['OPT_STATUS']}: {desc[0] if desc else ''} (HTTP {status}, {where})")
        return envelope.get("DATA")


def domain_cluster_id(server: str, name: str, timeout: float = 120.0, poll: float = 2.0,
                      request_timeout: float = 5.0, sleep: Callable[[float], None] = time.sleep,
                      org_id: int = 1) -> str:
    """Wait (bounded) for the watcher's Domain to appear and return its validated CLUSTER_ID."""
    client = Client.for_server(server, request_timeout, org_id)
    deadline = time.monotonic() + timeout
    while True:
        domains = client.call("GET", "/v2/domains/", {"name": name}) or []
        matches = [d for d in domains if isinstance(d, dict) and d.get("NAME") == name]
        if len(matches) > 1:
            raise ServerError(f"{len(matches)} domains are named {name!r}; cannot pick a cluster id")
        if matches:
            cluster_id: Optional[str] = matches[0].get("CLUSTER_ID")
            if not isinstance(cluster_id, str) or not options.CLUSTER_ID.fullmatch(cluster_id):
                raise ServerError(f"domain {name!r} has an invalid CLUSTER_ID {cluster_id!r}")
            return cluster_id
        if time.monotonic() + poll > deadline:
            raise ServerError(f"no domain named {name!r} on deepflow-server after {timeout:g}s "
                              "(is the watcher Deployment running and registered?)")
        sleep(poll)


def _validate_group_ref(name_or_id: str) -> None:
    if not options.AGENT_GROUP_ID.fullmatch(name_or_id) and not options.AGENT_GROUP_NAME.fullmatch(name_or_id):
        raise InputError(f"--agent-group {name_or_id!r}: expected a group name or g-XXXXXXXXXX")


def find_group(client: Client, name_or_id: str) -> Optional[dict[str, Any]]:
    """The group with that short id (g-...) or exact name, None when there is none."""
    _validate_group_ref(name_or_id)
    by_id = bool(options.AGENT_GROUP_ID.fullmatch(name_or_id))
    field, query = ("SHORT_UUID", "short_uuid") if by_id else ("NAME", "name")
    groups = client.call("GET", "/v1/vtap-groups/", {query: name_or_id}) or []
    # Filter again here: a server that ignores the query answers with every group.
    matches = [g for g in groups if isinstance(g, dict) and g.get(field) == name_or_id]
    if len(matches) > 1:
        raise ServerError(f"{len(matches)} agent groups match {name_or_id!r}; use the g-XXXXXXXXXX id")
    return matches[0] if matches else None


def resolve_agent_group(server_url: str, name_or_id: str, timeout: float = 10.0, org_id: int = 1) -> str:
    """The g-XXXXXXXXXX id of an existing group, given its name or id (for install --agent-group)."""
    group = find_group(Client.for_server(server_url, timeout, org_id), name_or_id)
    if group is None:
        raise ServerError(f"no agent group {name_or_id!r} on {options.parse_server(server_url).url}")
    short = group.get("SHORT_UUID")
    if not isinstance(short, str) or not options.AGENT_GROUP_ID.fullmatch(short):
        raise ServerError(f"agent group {name_or_id!r} has no usable SHORT_UUID: {short!r}")
    return short


@dataclass(frozen=True)
class ApplyResult:
    group_id: str
    lcuuid: str
    group_created: bool
    config_existed: bool
    method: str  # POST, PUT, or "" when the server already had this exact config
    changed: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _existing_config(client: Client, lcuuid: str) -> Optional[str]:
    """The group's config YAML, or None when it has none (the server may answer FAIL then)."""
    try:
        data = client.call("GET", f"/v1/agent-group-configuration/{lcuuid}/yaml")
    except ServerError:
        return None
    return data if isinstance(data, str) and data.strip() else None


def _same_yaml(a: str, b: str) -> bool:
    import yaml

    from hostagent.deepflow import yaml12

    try:
        return bool(yaml12.load(a) == yaml12.load(b))
    except yaml.YAMLError:
        return False


def server_template(client: Client) -> Optional[str]:
    """The server's own agent-group template (YAML text), None when it has no such route (before v6.6.9)."""
    try:
        data = client.call("GET", "/v1/agent-group-configuration/template/yaml")
    except RouteMissing:
        return None
    if not isinstance(data, str) or not data.strip():
        raise ServerError("deepflow-server answered GET /v1/agent-group-configuration/template/yaml without a template")
    return data


def _group_or_create(client: Client, name_or_id: str, create: bool) -> tuple[dict[str, Any], bool]:
    group = find_group(client, name_or_id)
    if group is not None:
        return group, False
    if not create:
        raise ServerError(f"no agent group {name_or_id!r}; pass --create-group to create it")
    if options.AGENT_GROUP_ID.fullmatch(name_or_id):
        raise InputError("--create-group needs a group name, not an id")
    client.call("POST", "/v1/vtap-groups/", body=json.dumps({"name": name_or_id}).encode())
    group = find_group(client, name_or_id)
    if group is None:
        raise ServerError(f"created agent group {name_or_id!r} but cannot find it afterwards")
    return group, True


def _undo_created(client: Client, lcuuid: str, refused: ServerError) -> None:
    try:
        client.call("DELETE", f"/v1/vtap-groups/{lcuuid}/")
    except ServerError as undo:
        raise ServerError(f"{refused}; and the group created for it could not be deleted: {undo}") from None


def group_short_id(client: Client, name_or_id: str, create: bool = False) -> tuple[str, str, bool]:
    """(SHORT_UUID, LCUUID, created) of a group, making it when asked."""
    group, created = _group_or_create(client, name_or_id, create)
    lcuuid, short = group.get("LCUUID"), group.get("SHORT_UUID")
    if not isinstance(lcuuid, str) or not lcuuid or not isinstance(short, str) or not options.AGENT_GROUP_ID.fullmatch(short):
        raise ServerError(f"agent group {name_or_id!r}: answer lacks LCUUID/SHORT_UUID")
    return short, lcuuid, created


def apply_flat_config(client: Client, short: str, lcuuid: str, created: bool, config: dict[str, Any],
                      yaml_text: str) -> ApplyResult:
    """Servers before v6.6.9: the flat schema on /v1/vtap-group-configuration/advanced/. The config names
    its group in vtap_group_id; an existing config (found by that id) is PATCHed by its own lcuuid."""
    configs = client.call("GET", "/v1/vtap-group-configuration/", {"vtap_group_id": short}) or []
    mine = [c for c in configs if isinstance(c, dict) and c.get("VTAP_GROUP_LCUUID") == lcuuid]
    try:
        if mine:
            cfg_lcuuid = mine[0].get("LCUUID")
            if not isinstance(cfg_lcuuid, str) or not cfg_lcuuid:
                raise ServerError(f"the config of agent group {short} has no LCUUID")
            stored = client.call("GET", f"/v1/vtap-group-configuration/advanced/{cfg_lcuuid}/")
            if isinstance(stored, str) and _flat_matches(stored, config):
                return ApplyResult(short, lcuuid, False, True, "", changed=False)
            client.call("PATCH", f"/v1/vtap-group-configuration/advanced/{cfg_lcuuid}/", body=yaml_text.encode(),
                        content_type="text/yaml; charset=utf-8")
            return ApplyResult(short, lcuuid, created, True, "PATCH")
        client.call("POST", "/v1/vtap-group-configuration/advanced/", body=yaml_text.encode(),
                    content_type="text/yaml; charset=utf-8")
    except ServerError as refused:
        if created:
            _undo_created(client, lcuuid, refused)
        raise
    return ApplyResult(short, lcuuid, created, False, "POST")


def _flat_matches(stored: str, config: dict[str, Any]) -> bool:
    """The server answers with every key it keeps (not vtap_group_id): ours must all be there, equal."""
    import yaml

    from hostagent.deepflow import yaml12

    try:
        have = yaml12.load(stored) or {}
    except yaml.YAMLError:
        return False
    return isinstance(have, dict) and all(have.get(k) == v for k, v in config.items() if k != "vtap_group_id")


def apply_nested_config(client: Client, short: str, lcuuid: str, created: bool, yaml_text: str) -> ApplyResult:
    """v6.6.9 on: POST (no config yet) or PUT the YAML on /v1/agent-group-configuration/<lcuuid>/yaml."""
    existing = _existing_config(client, lcuuid)
    existed = existing is not None
    if existing is not None and not created and _same_yaml(existing, yaml_text):
        return ApplyResult(short, lcuuid, False, True, "", changed=False)
    method = "PUT" if existed else "POST"
    try:
        # The server validates the YAML before it stores anything; a refusal leaves the old config.
        client.call(method, f"/v1/agent-group-configuration/{lcuuid}/yaml", body=yaml_text.encode(),
                    content_type="text/yaml; charset=utf-8")
    except ServerError as refused:
        if created:
            _undo_created(client, lcuuid, refused)
        raise
    return ApplyResult(short, lcuuid, created, existed, method)


# --- this host's agent on the server ----------------------------------------------------------------

def match_host_agent(vtaps: list[Any], hostname: str, ips: frozenset[str], macs: frozenset[str]) -> Optional[dict[str, Any]]:
    """The registered agent (model.Vtap) that is this host's: CTRL_IP and CTRL_MAC both this host's (the
    agent's default ip-and-mac identity). Only this match is ever acted on (moved, deleted): CTRL_IP
    alone, LAUNCH_SERVER or NAME also match another host behind NAT, with a reused IP or a duplicate
    host name (weak_matches reports those). More than one is refused: hostagent will not guess."""
    found = [v for v in _agents(vtaps) if _ip_and_mac(v, ips, macs)]
    if len(found) > 1:
        names = ", ".join(f"{v.get('NAME')} ({v.get('CTRL_IP')})" for v in found)
        raise ServerError(f"{len(found)} registered agents could be this host's: {names}; remove the stale ones")
    return found[0] if found else None


def _agents(vtaps: list[Any]) -> list[dict[str, Any]]:
    return [v for v in vtaps if isinstance(v, dict) and isinstance(v.get("LCUUID"), str)]


def _ip_and_mac(v: dict[str, Any], ips: frozenset[str], macs: frozenset[str]) -> bool:
    return v.get("CTRL_IP") in ips and str(v.get("CTRL_MAC") or "").lower() in macs


def weak_matches(vtaps: list[Any], hostname: str, ips: frozenset[str], macs: frozenset[str]) -> list[str]:
    """A line for each agent that only looks like this host's (CTRL_IP without its CTRL_MAC,
    LAUNCH_SERVER, NAME): reported so the admin can judge, never acted on."""
    lines = []
    for v in _agents(vtaps):
        if _ip_and_mac(v, ips, macs):
            continue
        why = ("CTRL_IP, not its CTRL_MAC" if v.get("CTRL_IP") in ips else "LAUNCH_SERVER"
               if v.get("LAUNCH_SERVER") in ips else "NAME" if hostname and v.get("NAME") == hostname else None)
        if why:
            lines.append(f"agent {v.get('NAME')} ({v.get('CTRL_IP')}, {v.get('CTRL_MAC') or 'no MAC'}) matches this "
                         f"host only by {why}: left alone (another host behind NAT, a reused IP or a duplicate "
                         "name?); if it is this host's, move or delete it on the server by hand")
    return lines


def lookup_host_agent(client: Client) -> tuple[Optional[dict[str, Any]], list[str]]:
    """This host's agent as the server lists it (GET /v1/vtaps/), None when it is not registered; and,
    when it is not, the lines of weak_matches."""
    from hostagent.facts.host import host_identity

    me = host_identity()
    vtaps = client.call("GET", "/v1/vtaps/") or []
    agent = match_host_agent(vtaps, me.hostname, me.ips, me.macs)
    return agent, [] if agent is not None else weak_matches(vtaps, me.hostname, me.ips, me.macs)


def find_host_agent(client: Client) -> Optional[dict[str, Any]]:
    """This host's agent (an IP+MAC match), None when it is not registered."""
    return lookup_host_agent(client)[0]


def agent_in_group(client: Client, vtap_lcuuid: str) -> Optional[str]:
    """The VTAP_GROUP_LCUUID the server reports for that agent now, None when it is gone."""
    found = client.call("GET", "/v1/vtaps/", {"lcuuid": vtap_lcuuid}) or []
    mine = [v for v in found if isinstance(v, dict) and v.get("LCUUID") == vtap_lcuuid]
    return str(mine[0].get("VTAP_GROUP_LCUUID")) if mine else None


def set_agent_group(client: Client, vtap_lcuuid: str, group_lcuuid: str) -> None:
    client.call("PATCH", f"/v1/vtaps/{vtap_lcuuid}/", body=json.dumps({"VTAP_GROUP_LCUUID": group_lcuuid}).encode())


def deregister_host_agent(client: Client) -> tuple[Optional[str], list[str]]:
    """DELETE this host's agent (an IP+MAC match) from the server (uninstall --deregister): its NAME, None
    when not registered; and the weak matches, reported and left alone."""
    agent, weak = lookup_host_agent(client)
    if agent is None:
        return None, weak
    client.call("DELETE", f"/v1/vtaps/{agent['LCUUID']}/")
    return str(agent.get("NAME") or agent["LCUUID"]), weak


def move_agent(client: Client, vtap_lcuuid: str, group_lcuuid: str, wait: float = 60.0, poll: float = 1.0,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """PATCH /v1/vtaps/<lcuuid>/ with VTAP_GROUP_LCUUID (server/controller/http/service/vtap.go), then wait
    (bounded) until the server reports it in that group."""
    set_agent_group(client, vtap_lcuuid, group_lcuuid)
    deadline = time.monotonic() + wait
    while True:
        now = agent_in_group(client, vtap_lcuuid)
        if now == group_lcuuid:
            return
        if now is None:
            raise ServerError(f"agent {vtap_lcuuid} disappeared from {client.base} while moving it")
        if time.monotonic() + poll > deadline:
            raise ServerError(f"deepflow-server still reports agent {vtap_lcuuid} in group {now} {wait:g}s after "
                              f"moving it to {group_lcuuid}")
        sleep(poll)


def group_limits(client: Client, group_lcuuid: str, group_short: str) -> dict[str, Optional[int]]:
    """The group's global.limits (max_millicpus, max_memory MiB): its config's values, else the template's
    defaults (what the agent then uses). Flat schema on servers before v6.6.9."""
    from hostagent.deepflow import keys, yaml12
    from hostagent.deepflow.template import parse_template

    template = server_template(client)
    if template is None:
        table = keys.table_for("6.5.9", "legacy")
        names = {"max_millicpus": "max_millicpus", "max_memory": "max_memory"}
        configs = client.call("GET", "/v1/vtap-group-configuration/", {"vtap_group_id": group_short}) or []
        mine = [c for c in configs if isinstance(c, dict) and c.get("VTAP_GROUP_LCUUID") == group_lcuuid]
        text = client.call("GET", f"/v1/vtap-group-configuration/advanced/{mine[0]['LCUUID']}/") if mine else ""
        values = yaml12.load(text) if isinstance(text, str) and text.strip() else {}
    else:
        table = parse_template(template)
        names = {"max_millicpus": "global.limits.max_millicpus", "max_memory": "global.limits.max_memory"}
        text = _existing_config(client, group_lcuuid) or ""
        loaded = yaml12.load(text) if text.strip() else {}
        values = ((loaded or {}).get("global") or {}).get("limits") or {}
    out: dict[str, Optional[int]] = {}
    for name, path in names.items():
        value = values.get(name) if isinstance(values, dict) else None
        if not isinstance(value, int):
            spec = table.keys.get(path)
            value = spec.default if spec is not None and isinstance(spec.default, int) else None
        out[name] = value
    return out
