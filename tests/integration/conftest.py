"""Fixtures for k8s-sync's integration tests: the fake apiserver (TLS, a small cluster), the fake
deepflow-server, and `start`, which runs a Runner against both (lists in pages of 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from hostagent.k8ssync import kube
from hostagent.k8ssync.reporter import Reporter
from hostagent.k8ssync.runner import Runner
from hostagent.options import build_k8s_sync
from tests.fixtures.fake_apiserver import FakeApiserver, make_tls, small_cluster
from tests.fixtures.fake_deepflow_grpc import FakeDeepflowGrpc
from tests.integration.k8s_sync_helpers import Running, write_kubeconfig


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("tls"))
    make_tls(d)
    return d


@pytest.fixture
def api(tls_dir: str) -> Iterator[FakeApiserver]:
    server = FakeApiserver(tls_dir=None)
    server.tls = {k: f"{tls_dir}/{n}" for k, n in (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"))}
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server.tls["cert"], server.tls["key"])
    server.httpd.socket = ctx.wrap_socket(server.httpd.socket, server_side=True)
    small_cluster(server, 3)
    server.start()
    yield server
    server.down()
    server.close()


@pytest.fixture
def df() -> Iterator[FakeDeepflowGrpc]:
    server = FakeDeepflowGrpc().start()
    yield server
    server.stop()


@pytest.fixture
def start(tmp_path: Path, api: FakeApiserver, df: FakeDeepflowGrpc) -> Iterator[Any]:
    started: list[Running] = []

    def go(controllers: Optional[list[str]] = None, port: Optional[int] = None, token: str = "test-token", **values: Any) -> Running:
        values.setdefault("cluster_id", "d-abc123")
        opts = build_k8s_sync({"controller_ips": controllers or ["127.0.0.1"], "controller_port": port or df.port,
                               "kubeconfig": write_kubeconfig(tmp_path / "kubeconfig", api, token), "interval": "30", **values})
        runner = Runner(opts, kube.load(opts.kubeconfig), Reporter(list(opts.controller_ips), opts.controller_port, timeout=5))
        for w in runner.watchers:
            w.list_limit = 2  # chunked lists: several pages per type
        r = Running(runner)
        started.append(r)
        return r

    yield go
    for r in started:
        r.stop()
