"""The gRPC side: KubernetesAPISync and GetKubernetesClusterID to deepflow-server's controllers.

agent.Synchronizer (v7 and later) first, trident.Synchronizer (v6.6.9 and older) when a controller
answers UNIMPLEMENTED; the service that worked is remembered per controller. Controllers are tried
in order from the last one that answered (failover as the agent's controller-ips). Every call has a
deadline. Requests are sent as bytes (proto.py encodes them), so no generated code is involved."""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Optional

from hostagent.k8ssync import proto
from hostagent.options import GRPC_SEND_HEADROOM

log = logging.getLogger("hostagent.k8s-sync")

MAX_MESSAGE = 100 * 1024 * 1024  # deepflow-server's gRPC receive limit (grpc-max-message-length, default)
ANSWER_CAP = 4 * 1024 * 1024


class ReportError(Exception):
    pass


@dataclass
class Answer:
    controller: str
    service: str
    data: bytes


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Reporter:
    def __init__(self, controllers: list[str], port: int, timeout: float = 30.0, tls: bool = False,
                 ca_file: Optional[str] = None, server_name: Optional[str] = None, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self.controllers, self.port, self.timeout = list(controllers), port, timeout
        self.tls, self.ca_file, self.server_name = tls or bool(ca_file), ca_file, server_name
        self.current = 0
        self._channels: dict[str, Any] = {}
        self._service: dict[str, str] = {}

    def _channel(self, host: str) -> Any:
        import grpc

        if host not in self._channels:
            opts: list[tuple[str, Any]] = [("grpc.max_send_message_length", self.max_message + GRPC_SEND_HEADROOM),
                                           ("grpc.max_receive_message_length", ANSWER_CAP),
                                           ("grpc.enable_retries", 0),
                                           # gRPC's own reconnect backoff grows to 120 s: after a long
                                           # outage the next report would wait for it
                                           ("grpc.max_reconnect_backoff_ms", 10_000)]
            target = _target(host, self.port)
            if self.tls:
                root = None
                if self.ca_file:
                    with open(self.ca_file, "rb") as f:
                        root = f.read()
                if self.server_name:
                    opts.append(("grpc.ssl_target_name_override", self.server_name))
                self._channels[host] = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=root), options=opts)
            else:
                self._channels[host] = grpc.insecure_channel(target, options=opts)
        return self._channels[host]

    def call(self, method: str, request: bytes) -> Answer:
        import grpc

        errors = []
        n = len(self.controllers)
        for k in range(n):
            i = (self.current + k) % n
            host = self.controllers[i]
            known = self._service.get(host)
            services = [known] if known else list(proto.SERVICES)
            for service in services:
                stub = self._channel(host).unary_unary(f"/{service}/{method}")
                try:
                    data = stub(request, timeout=self.timeout, wait_for_ready=False)
                except grpc.RpcError as e:
                    code = e.code() if hasattr(e, "code") else None
                    if code == grpc.StatusCode.UNIMPLEMENTED and not known and service != services[-1]:
                        continue  # an older server: trident.Synchronizer
                    errors.append(f"{_target(host, self.port)}: {code.name if code else '?'} {e.details() if hasattr(e, 'details') else e}")
                    break
                if self._service.get(host) != service:
                    log.info("controller %s speaks %s", _target(host, self.port), service)
                self._service[host] = service
                if i != self.current:
                    log.info("failed over to controller %s", _target(host, self.port))
                self.current = i
                return Answer(_target(host, self.port), service, bytes(data))
        raise ReportError("; ".join(errors) or "no controller")

    def sync(self, request: bytes) -> tuple[Answer, Optional[int]]:
        answer = self.call(proto.SYNC, request)
        return answer, proto.decode_sync_response(answer.data)

    def cluster_id(self, ca_md5: Optional[str], team_id: Optional[str]) -> str:
        answer = self.call(proto.CLUSTER_ID, proto.cluster_id_request(ca_md5, team_id))
        cluster_id, error = proto.decode_cluster_id_response(answer.data)
        if error or not cluster_id:
            raise ReportError(f"{answer.controller} GetKubernetesClusterID: {error or 'empty cluster_id'}")
        return cluster_id

    def source_ip(self) -> Optional[str]:
        """The local address that routes to the current controller (a UDP connect sends nothing)."""
        host = self.controllers[self.current]
        try:
            info = socket.getaddrinfo(host, self.port, type=socket.SOCK_DGRAM)[0]
            with socket.socket(info[0], socket.SOCK_DGRAM) as s:
                s.connect(info[4])
                return str(s.getsockname()[0])
        except OSError:
            return None

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
