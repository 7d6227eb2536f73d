"""deepflow-server's agent-group API: find or create a group, push its YAML config.

Routes and envelope as deepflow-ctl uses them (facts §5): GET/POST /v1/vtap-groups/,
GET/POST/PUT /v1/agent-group-configuration/<lcuuid>/yaml, answers shaped
{"OPT_STATUS", "DESCRIPTION", "DATA"}. A failure is not a success unless HTTP 200 and
OPT_STATUS SUCCESS; the server's DESCRIPTION is shown verbatim.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any, Optional

from hostagent.errors import InputError

API_PORT = 30417  # deepflow-ctl --api-port
GROUP_ID = re.compile(r"^g-[0-9a-zA-Z]{10}$")
GROUP_NAME = re.compile(r"^[^\x00-\x1f/?#]{1,64}$")
# deepflow-ctl sends these on every request.
HEADERS = {"X-User-Id": "1", "X-User-Type": "1"}


class ServerError(InputError):
    """The server refused or failed; whatever this call had changed was undone."""


def server_base(server: str) -> str:
    """http://HOST:PORT from HOST, HOST:PORT or a URL; the port defaults to 30417."""
    raw = server.strip()
    if "://" not in raw:
        raw = f"http://{raw}"
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise InputError(f"--server {server!r}: expected HOST, HOST:PORT or http://HOST:PORT")
    try:
        port = parts.port or API_PORT
    except ValueError:
        raise InputError(f"--server {server!r}: bad port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


@dataclass
class Client:
    base: str
    timeout: float = 10.0
    org_id: int = 1

    def call(self, method: str, path: str, query: Optional[dict[str, str]] = None, body: Optional[bytes] = None,
             content_type: str = "application/json") -> Any:
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = dict(HEADERS, **{"X-Org-Id": str(self.org_id)})
        if body is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ServerError(f"{method} {url}: no answer within {self.timeout:g}s") from None
            raise ServerError(f"cannot reach deepflow-server at {self.base}: {reason}") from None
        except (socket.timeout, TimeoutError):
            raise ServerError(f"{method} {url}: no answer within {self.timeout:g}s") from None
        try:
            envelope = json.loads(raw)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "OPT_STATUS" not in envelope:
            text = raw.decode("utf-8", "replace").strip()[:200]
            raise ServerError(f"{method} {path}: HTTP {status}, not a deepflow answer: {text!r}")
        if status != 200 or envelope["OPT_STATUS"] != "SUCCESS":
            raise ServerError(f"{method} {path}: {envelope['OPT_STATUS']}: {envelope.get('DESCRIPTION', '')}")
        return envelope.get("DATA")


def _validate_group_ref(name_or_id: str) -> None:
    if not GROUP_ID.match(name_or_id) and not GROUP_NAME.match(name_or_id):
        raise InputError(f"--agent-group {name_or_id!r}: expected a group name or g-XXXXXXXXXX")


def find_group(client: Client, name_or_id: str) -> Optional[dict[str, Any]]:
    """The group with that short id (g-...) or exact name, None when there is none."""
    _validate_group_ref(name_or_id)
    by_id = bool(GROUP_ID.match(name_or_id))
    field, query = ("SHORT_UUID", "short_uuid") if by_id else ("NAME", "name")
    groups = client.call("GET", "/v1/vtap-groups/", {query: name_or_id}) or []
    # Filter again here: a server that ignores the query answers with every group.
    matches = [g for g in groups if isinstance(g, dict) and g.get(field) == name_or_id]
    if len(matches) > 1:
        raise ServerError(f"{len(matches)} agent groups match {name_or_id!r}; use the g-XXXXXXXXXX id")
    return matches[0] if matches else None


def resolve_agent_group(server_url: str, name_or_id: str, timeout: float = 10.0) -> str:
    """The g-XXXXXXXXXX id of an existing group, given its name or id (for install --agent-group)."""
    group = find_group(Client(server_base(server_url), timeout), name_or_id)
    if group is None:
        raise ServerError(f"no agent group {name_or_id!r} on {server_base(server_url)}")
    short = group.get("SHORT_UUID")
    if not isinstance(short, str) or not GROUP_ID.match(short):
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

    try:
        return yaml.safe_load(a) == yaml.safe_load(b)
    except yaml.YAMLError:
        return False


def apply_group_config(server_url: str, name_or_id: str, yaml_text: str, *, create: bool = False,
                       timeout: float = 10.0) -> ApplyResult:
    """Find (or, with create, make) the group and push the config; on failure undo the group creation."""
    client = Client(server_base(server_url), timeout)
    group = find_group(client, name_or_id)
    created = False
    if group is None:
        if not create:
            raise ServerError(f"no agent group {name_or_id!r}; pass --create-group to create it")
        if GROUP_ID.match(name_or_id):
            raise InputError("--create-group needs a group name, not an id")
        client.call("POST", "/v1/vtap-groups/", body=json.dumps({"name": name_or_id}).encode())
        group = find_group(client, name_or_id)
        if group is None:
            raise ServerError(f"created agent group {name_or_id!r} but cannot find it afterwards")
        created = True
    lcuuid, short = group.get("LCUUID"), group.get("SHORT_UUID")
    if not isinstance(lcuuid, str) or not lcuuid or not isinstance(short, str):
        raise ServerError(f"agent group {name_or_id!r}: answer lacks LCUUID/SHORT_UUID")
    existing = _existing_config(client, lcuuid)
    existed = existing is not None
    if existed and not created and _same_yaml(existing, yaml_text):
        return ApplyResult(short, lcuuid, False, True, "", changed=False)
    method = "PUT" if existed else "POST"
    try:
        # The server validates the YAML before it stores anything; a refusal leaves the old config.
        client.call(method, f"/v1/agent-group-configuration/{lcuuid}/yaml", body=yaml_text.encode(),
                    content_type="text/yaml; charset=utf-8")
    except ServerError as refused:
        if created:
            try:
                client.call("DELETE", f"/v1/vtap-groups/{lcuuid}/")
            except ServerError as undo:
                raise ServerError(f"{refused}; and the group created for it could not be deleted: {undo}") from None
        raise
    return ApplyResult(short, lcuuid, created, existed, method)
