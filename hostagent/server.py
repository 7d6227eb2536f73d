"""The deepflow-server HTTP API, as far as install needs it: the cluster id of a watcher's Domain."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional

from hostagent.errors import InputError
from hostagent.options import CLUSTER_ID_RE


class ServerError(InputError):
    """The server refused, failed or gave an answer we cannot use; nothing was changed."""


def get_json(url: str, timeout: float) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        raise ServerError(f"deepflow-server answered HTTP {e.code} for {url}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise ServerError(f"deepflow-server at {url} timed out after {timeout:g}s") from None
        raise ServerError(f"cannot reach deepflow-server at {url}: {getattr(reason, 'strerror', None) or reason}") from None
    except (socket.timeout, TimeoutError):
        raise ServerError(f"deepflow-server at {url} timed out after {timeout:g}s") from None
    try:
        return json.loads(body)
    except ValueError:
        raise ServerError(f"deepflow-server at {url} did not return JSON") from None


def _data(envelope: Any, url: str) -> Any:
    if not isinstance(envelope, dict) or "OPT_STATUS" not in envelope:
        raise ServerError(f"unexpected answer from {url}: no OPT_STATUS envelope")
    if envelope["OPT_STATUS"] != "SUCCESS":
        desc = str(envelope.get("DESCRIPTION") or "").splitlines()[0:1]
        raise ServerError(f"deepflow-server refused: {envelope['OPT_STATUS']} {desc[0] if desc else ''}".rstrip())
    return envelope.get("DATA")


def domain_cluster_id(base_url: str, name: str, timeout: float = 120.0, poll: float = 2.0,
                      request_timeout: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> str:
    """Wait (bounded) for the watcher's Domain to appear and return its validated CLUSTER_ID."""
    url = f"{base_url}/v2/domains/?{urllib.parse.urlencode({'name': name})}"
    deadline = time.monotonic() + timeout
    while True:
        domains = _data(get_json(url, request_timeout), url) or []
        matches = [d for d in domains if isinstance(d, dict) and d.get("NAME") == name]
        if len(matches) > 1:
            raise ServerError(f"{len(matches)} domains are named {name!r}; cannot pick a cluster id")
        if matches:
            cluster_id: Optional[str] = matches[0].get("CLUSTER_ID")
            if not isinstance(cluster_id, str) or not CLUSTER_ID_RE.match(cluster_id):
                raise ServerError(f"domain {name!r} has an invalid CLUSTER_ID {cluster_id!r}")
            return cluster_id
        if time.monotonic() + poll > deadline:
            raise ServerError(f"no domain named {name!r} on deepflow-server after {timeout:g}s "
                              "(is the watcher Deployment running and registered?)")
        sleep(poll)
