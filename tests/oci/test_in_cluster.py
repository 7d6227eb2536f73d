"""The image runs k8s-sync as deploy/k8s-sync.yaml does, under crun: the ConfigMap's file as --config-file,
the in-cluster credentials (token, ca.crt, namespace in /var/run/secrets/kubernetes.io/serviceaccount,
KUBERNETES_SERVICE_HOST/PORT) against the fake apiserver over TLS, and the fake deepflow-server as the
controller: reports arrive, follow the cluster, and SIGTERM ends it."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

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


def test_reports_arrive_from_the_image(pod: Any, tmp_path: Path) -> None:
    api = FakeApiserver(tls_dir=str(tmp_path / "tls"), token="projected-token")
    assert api.tls
    small_cluster(api, 3)
    api.start()
    ca = Path(api.tls["ca"]).read_bytes()
    # No cluster id in the ConfigMap: k8s-sync asks by the in-cluster CA's md5, as deepflow-agent does.
    df = FakeDeepflowGrpc(cluster_ids={hashlib.md5(ca).hexdigest(): "d-incluster1"}).start()
    try:
        configmap = find(docs("k8s-sync.yaml"), "ConfigMap")
        (key,) = configmap["data"]
        config = yaml.safe_load(configmap["data"][key])
        assert config["cluster-id"] is None
        config.update({"controller-ip": ["127.0.0.1"], "controller-port": df.port, "team-id": "team-a"})
        container = pod(files={"config": {key: yaml.safe_dump(config).encode()},
                               "serviceaccount": {"token": b"projected-token", "ca.crt": ca, "namespace": b"kube-system"}},
                        env={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}).start()
        try:
            reports = df.wait(lambda r: len(r) >= 1, timeout=60)
        except AssertionError as e:
            raise AssertionError(f"{e}; the container said:\n{container.output()[-3000:]}") from None
        first = reports[0]
        assert first["cluster_id"] == "d-incluster1" and first["team_id"] == "team-a", container.output()
        assert pods_of(first) == ["web-5d9c-0", "web-5d9c-1", "web-5d9c-2"]
        assert df.violations == []
        for pid in _processes(container.pid()):
            assert_confined(pid)
        api.add("pods", pod_object("web-5d9c-9", ip="10.0.0.9"))
        df.wait(lambda r: "web-5d9c-9" in pods_of(r[-1]), timeout=30)
        code, seconds = container.stop()
        assert code == 0, container.output()
        assert seconds < 10, f"SIGTERM took {seconds:.1f} s (the Deployment grants 30)"
    finally:
        df.stop()
        api.down()
        api.close()
