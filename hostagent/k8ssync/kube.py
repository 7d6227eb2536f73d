"""The apiserver connection: credentials from a kubeconfig file or the in-cluster service account,
read by the official `kubernetes` client's config loaders (contexts, client certificates, exec
plugins, token files; in-cluster token rotation), and plain urllib3 requests for list and watch.

Why not the client's generated API classes: they turn every object into a model instance (a
V1Pod with its nested models costs tens of KiB; 150k of them would not fit the 300 MiB target)
and the generated call signatures changed shape in kubernetes 37; the config loaders are stable
across releases. Objects stay plain JSON dicts, trimmed as soon as they arrive."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from hostagent.errors import InputError

IN_CLUSTER_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class Gone(ApiError):
    """410: the resourceVersion (or the continue token) is too old; list again."""


@dataclass
class KubeConfig:
    host: str
    ca_file: Optional[str]
    verify: bool
    cert_file: Optional[str]
    key_file: Optional[str]
    config: Any  # the kubernetes Configuration, for the (refreshing) bearer token

    def token(self) -> Optional[str]:
        value = self.config.auth_settings().get("BearerToken", {}).get("value")
        return str(value) if value else None

    def ca_md5(self) -> Optional[str]:
        """md5 of the CA certificate text, as the real agent computes it from the in-cluster ca.crt:
        the key GetKubernetesClusterID knows the cluster by."""
        if not self.ca_file:
            return None
        with open(self.ca_file, "rb") as f:
            return hashlib.md5(f.read()).hexdigest()


def _host_library_path() -> None:
    """Exec credential plugins (a kubeconfig's users[].user.exec) are the host's programs, and the client
    hands them this process's environment: from the single file, without the LD_LIBRARY_PATH that
    PyInstaller's loader set to the bundle (its glibc and libssl). This process has read it already."""
    if getattr(sys, "frozen", False):
        from hostagent.host.run import host_library_path

        library_path = host_library_path(os.environ, frozen=True)
        os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
        os.environ.pop("LD_LIBRARY_PATH", None)
        if library_path is not None:
            os.environ["LD_LIBRARY_PATH"] = library_path


def load(kubeconfig: Optional[str], context: Optional[str] = None) -> KubeConfig:
    _host_library_path()
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg, persist_config=False)
        else:
            config.load_incluster_config(client_configuration=cfg)
    except ConfigException as e:
        where = kubeconfig or "the in-cluster service account (KUBERNETES_SERVICE_HOST, /var/run/secrets/kubernetes.io)"
        raise InputError(f"cannot load Kubernetes credentials from {where}: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise InputError(f"cannot read kubeconfig {kubeconfig}: {e.strerror}") from None
    if not str(cfg.host).startswith(("https://", "http://")):
        raise InputError(f"kubeconfig server {cfg.host!r} is not an http(s) URL")
    return KubeConfig(str(cfg.host).rstrip("/"), cfg.ssl_ca_cert, bool(cfg.verify_ssl), cfg.cert_file, cfg.key_file, cfg)


class Client:
    def __init__(self, kc: KubeConfig) -> None:
        import urllib3

        self.kc = kc
        kw: dict[str, Any] = {"maxsize": 16, "retries": False}
        if kc.host.startswith("https://"):
            kw["cert_reqs"] = "CERT_REQUIRED" if kc.verify else "CERT_NONE"
            if kc.ca_file:
                kw["ca_certs"] = kc.ca_file
            if kc.cert_file:
                kw["cert_file"], kw["key_file"] = kc.cert_file, kc.key_file
        self.pool = urllib3.PoolManager(**kw)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "hostagent-k8s-sync"}
        token = self.kc.token()
        if token:
            headers["Authorization"] = token if token.lower().startswith("bearer ") else f"Bearer {token}"
        return headers

    def _request(self, path: str, fields: dict[str, str], read_timeout: float, stream: bool) -> Any:
        import urllib3

        try:
            resp = self.pool.request("GET", self.kc.host + path, fields=fields, headers=self._headers(),
                                     preload_content=not stream, redirect=False,
                                     timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=read_timeout))
        except urllib3.exceptions.HTTPError as e:
            raise ApiError(0, f"{self.kc.host}: {e}") from None
        if resp.status != 200:
            body = resp.data if not stream else resp.read(4096)
            resp.release_conn()
            message = _status_message(body) or resp.reason or ""
            raise (Gone if resp.status == 410 else ApiError)(resp.status, message)
        return resp

    def get(self, path: str, **params: str) -> Any:
        resp = self._request(path, params, READ_TIMEOUT, stream=False)
        try:
            return json.loads(resp.data)
        except ValueError:
            raise ApiError(200, f"{path}: the answer is not JSON") from None

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """Watch events, one dict each, until the server ends the stream."""
        resp = self._request(path, {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                                    "timeoutSeconds": str(timeout_seconds)}, timeout_seconds + 30.0, stream=True)
        buf = b""
        try:
            for chunk in resp.stream(65536, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield _event(line)
            if buf.strip():
                yield _event(buf)
        except Exception as e:
            import urllib3

            if isinstance(e, urllib3.exceptions.HTTPError):
                raise ApiError(0, f"watch {path}: {e}") from None
            raise
        finally:
            resp.release_conn()


def _event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        raise ApiError(200, "a watch event is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise ApiError(200, "a watch event has no object")
    return event


def _status_message(body: bytes) -> str:
    try:
        status = json.loads(body)
        return str(status.get("message", ""))[:300] if isinstance(status, dict) else ""
    except ValueError:
        return body[:200].decode(errors="replace").strip()

