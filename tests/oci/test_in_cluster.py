"""The image runs k8s-sync as deploy/k8s-sync.yaml does, under crun: the ConfigMap's file as --config-file,
the in-cluster credentials (token, ca.crt, namespace in /var/run/secrets/kubernetes.io/serviceaccount,
KUBERNETES_SERVICE_HOST/PORT) against the fake apiserver over TLS, and the fake deepflow-server as the
controller: reports arrive, follow the cluster, and SIGTERM ends it. HOSTAGENT_TEST_TOKEN_ROTATION=1 also
rotates the token (about 80 s: the client re-reads the token file once a minute)."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.fixtures.fake_apiserver import FakeApiserver, small_cluster
from tests.fixtures.fake_apiserver import pod as pod_object
from tests.fixtures.fake_deepflow_grpc import FakeDeepflowGrpc
from tests.integration.k8s_sync_helpers import pods_of
from tests.oci.conftest import docs, find
from tests.oci.test_image import assert_confined


def _processes(pid: int) -> list[int]:
    """pid and all its descendants (the stub may run hostagent as its child)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += _processes(int(child))
    return found


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[tuple[FakeApiserver, FakeDeepflowGrpc]]:
    api = FakeApiserver(tls_dir=str(tmp_path / "tls"), token="projected-token")
    assert api.tls
    small_cluster(api, 3)
    api.start()
    # No cluster id in the ConfigMap: k8s-sync asks by the in-cluster CA's md5, as deepflow-agent does.
    df = FakeDeepflowGrpc(cluster_ids={hashlib.md5(_ca(api)).hexdigest(): "d-incluster1"}).start()
    yield api, df
    df.stop()
    api.down()
    api.close()


def _ca(api: FakeApiserver) -> bytes:
    assert api.tls
    return Path(api.tls["ca"]).read_bytes()


def _start(pod: Any, api: FakeApiserver, df: FakeDeepflowGrpc, **settings: Any) -> Any:
    """The Deployment's container with its ConfigMap (controller pointed at the fake) and service account."""
    configmap = find(docs("k8s-sync.yaml"), "ConfigMap")
    (key,) = configmap["data"]
    config = yaml.safe_load(configmap["data"][key])
    assert config["cluster-id"] is None
    config.update({"controller-ip": ["127.0.0.1"], "controller-port": df.port, **settings})
    return pod(files={"config": {key: yaml.safe_dump(config).encode()},
                      "serviceaccount": {"token": api.token.encode() if api.token else b"", "ca.crt": _ca(api),
                                         "namespace": b"kube-system"}},
               env={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}).start()


def _wait(df: FakeDeepflowGrpc, container: Any, predicate: Any, timeout: float) -> list[dict[str, Any]]:
    try:
        return df.wait(predicate, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; the container said:\n{container.output()[-3000:]}") from None


def test_reports_arrive_from_the_image(pod: Any, fakes: tuple[FakeApiserver, FakeDeepflowGrpc]) -> None:
    api, df = fakes
    container = _start(pod, api, df, **{"team-id": "team-a"})
    first = _wait(df, container, lambda r: len(r) >= 1, 60)[0]
    assert first["cluster_id"] == "d-incluster1" and first["team_id"] == "team-a", container.output()
    assert pods_of(first) == ["web-5d9c-0", "web-5d9c-1", "web-5d9c-2"]
    assert df.violations == []
    for pid in _processes(container.pid()):
        assert_confined(pid)
    api.add("pods", pod_object("web-5d9c-9", ip="10.0.0.9"))
    _wait(df, container, lambda r: "web-5d9c-9" in pods_of(r[-1]), 30)
    code, seconds = container.stop()
    assert code == 0, container.output()
    assert seconds < 10, f"SIGTERM took {seconds:.1f} s (the Deployment grants 30)"


@pytest.mark.skipif(os.environ.get("HOSTAGENT_TEST_TOKEN_ROTATION") != "1", reason="80 s: HOSTAGENT_TEST_TOKEN_ROTATION=1")
def test_rotated_token_is_read_again(pod: Any, fakes: tuple[FakeApiserver, FakeDeepflowGrpc]) -> None:
    """The kubelet rewrites the projected token; the apiserver then refuses the old one (stricter than a
    real one, which takes it until it expires). Within the client's minute the new one is used."""
    api, df = fakes
    container = _start(pod, api, df, interval=5)  # /version asked every 5 s: requests after the rotation
    _wait(df, container, lambda r: len(r) >= 1, 60)
    rotated = time.time()
    (container.volumes / "serviceaccount" / "token").write_text("rotated-token")
    api.token = "rotated-token"
    reports = _wait(df, container, lambda r: r[-1]["received_at"] > rotated + 65 and not r[-1].get("error_msg"), 120)
    # In between, the old token was refused (the rotation took effect), then the new one was read.
    assert any("version: HTTP 401" in r.get("error_msg", "") for r in reports if r["received_at"] > rotated)
    assert all("401" not in r.get("error_msg", "") for r in reports if r["received_at"] > rotated + 65)
