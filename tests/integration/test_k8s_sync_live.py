"""k8s-sync against a local fake apiserver (list/watch, TLS with its own CA, bearer token) and a
local fake deepflow-server (gRPC, decodes every entry against the contract). Loopback only."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hostagent.k8ssync import kube
from hostagent.k8ssync.reporter import Reporter
from hostagent.k8ssync.runner import Runner
from hostagent.options import build_k8s_sync
from tests.fixtures.fake_apiserver import FakeApiserver, pod
from tests.fixtures.fake_deepflow_grpc import FakeDeepflowGrpc
from tests.integration.k8s_sync_helpers import Running, free_port, pods_of, wait_for, write_kubeconfig


def test_reports_follow_the_cluster(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc) -> None:
    running = start()
    first = df.wait(lambda rs: len(rs) >= 1)[0]
    assert df.violations == [] and df.calls[0] == "agent.Synchronizer/KubernetesAPISync"
    assert first["cluster_id"] == "d-abc123" and first["source_ip"] == "127.0.0.1" and not first.get("error_msg")
    assert first["version"] == running.runner.store.version - 0 or first["version"] > 1_700_000_000
    assert {t: len(v) for t, v in first["objects"].items()} == {
        "*version.Info": 1, "*v1.Node": 1, "*v1.Namespace": 1, "*v1.Pod": 3, "*v1.Service": 1, "*v1.Deployment": 1,
        "*v1.ReplicaSet": 1, "*v1.Ingress": 1, "*v1.ConfigMap": 1}
    assert any("continue=" in q for p, q in api.requests if p == "/api/v1/pods"), "a chunked list"

    created = api.add("pods", pod("new-0"))
    second = df.wait(lambda rs: "new-0" in pods_of(rs[-1]))[-1]
    assert second["version"] == first["version"] + 1 and len(pods_of(second)) == 4
    api.delete("pods", created["metadata"]["uid"])
    third = df.wait(lambda rs: "new-0" not in pods_of(rs[-1]) and rs[-1]["version"] > second["version"])[-1]
    assert third["version"] == second["version"] + 1

    # 410 Gone: the history is compacted and the watches cut; the watchers list again
    lists_before = [w.lists for w in running.runner.watchers]
    api.compact()
    wait_for(lambda: all(w.lists > b for w, b in zip(running.runner.watchers, lists_before)),
             message=lambda: [(w.resource.name, w.lists, w.resource_version) for w in running.runner.watchers])
    api.add("pods", pod("after-compaction"))
    fourth = df.wait(lambda rs: "after-compaction" in pods_of(rs[-1]))[-1]
    assert fourth["version"] == third["version"] + 1

    # the apiserver goes down: error_msg, with the last good version and entries
    api.down()
    down = df.wait(lambda rs: "pods:" in rs[-1].get("error_msg", ""))[-1]
    assert down["version"] == fourth["version"] and pods_of(down) == pods_of(fourth)
    assert "pods:" in down["error_msg"]
    api.up()
    back = df.wait(lambda rs: not rs[-1].get("error_msg") and rs[-1]["received_at"] > down["received_at"], timeout=40)[-1]
    assert pods_of(back) == pods_of(fourth)
    assert df.violations == [] and running.error is None


def test_expired_continue_token_lists_again(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc) -> None:
    for i in range(6):
        api.add("pods", pod(f"extra-{i}"))
    seen = {"n": 0}
    real_get = kube.Client.get

    def get(self: kube.Client, path: str, **params: str) -> Any:
        if path == "/api/v1/pods" and params.get("continue") and seen["n"] == 0:
            seen["n"] += 1
            api.compact()  # the token now predates the history: HTTP 410
        return real_get(self, path, **params)

    kube.Client.get = get  # type: ignore[method-assign]
    try:
        start()
        report = df.wait(lambda rs: len(rs) >= 1)[0]
    finally:
        kube.Client.get = real_get  # type: ignore[method-assign]
    assert len(pods_of(report)) == 9 and seen["n"] == 1
    pod_lists = [q for p, q in api.requests if p == "/api/v1/pods" and "watch=" not in q]
    # after the 410 on the continue page, the pager's fallback: the same list again in one request
    assert len(pod_lists) == 3 and "continue=" in pod_lists[1], pod_lists
    assert "limit=" not in pod_lists[2] and "continue=" not in pod_lists[2], pod_lists


def test_legacy_server_and_failover(start: Any, api: FakeApiserver) -> None:
    legacy = FakeDeepflowGrpc(legacy=True).start()
    try:
        dead = "127.0.0.2"  # nothing listens there on that port: the first controller fails
        start(controllers=[dead, "127.0.0.1"], port=legacy.port)
        report = legacy.wait(lambda rs: len(rs) >= 1)[0]
        assert legacy.calls[0] == "trident.Synchronizer/KubernetesAPISync" and legacy.violations == []
        assert len(pods_of(report)) == 3
    finally:
        legacy.stop()


def test_cluster_id_from_the_ca_md5(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc) -> None:
    md5 = hashlib.md5(Path(api.tls["ca"]).read_bytes()).hexdigest()
    df.cluster_ids[md5] = "d-fromca01"
    start(cluster_id=None, team_id="t-team")
    report = df.wait(lambda rs: len(rs) >= 1)[0]
    assert report["cluster_id"] == "d-fromca01" and report["team_id"] == "t-team"
    assert df.cluster_id_requests[0] == {"ca_md5": md5, "team_id": "t-team"}


def test_bad_token_is_reported(start: Any, api: FakeApiserver, df: FakeDeepflowGrpc) -> None:
    start(token="wrong")
    # no good list ever: nothing but *version.Info? /version needs the token too: no entries at all,
    # so the server (agent id 0) does not queue it; the fake keeps it in .ignored
    import time

    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not df.ignored:
        time.sleep(0.2)
    assert df.ignored and "HTTP 401" in df.ignored[-1]["error_msg"]


def test_cli_run_once_json(tmp_path: Path, api: FakeApiserver, df: FakeDeepflowGrpc) -> None:
    kc = write_kubeconfig(tmp_path / "kc", api)
    proc = subprocess.run([sys.executable, "-m", "hostagent", "k8s-sync", "run", "--once", "--json", "--controller-ip",
                           "127.0.0.1", "--controller-port", str(df.port), "--cluster-id", "d-abc123", "--kubeconfig", kc],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["ok"] and obj["command"] == "k8s-sync run" and obj["data"]["report"]["entries"] == 11
    assert obj["data"]["report"]["service"] == "agent.Synchronizer"
    assert len(df.reports) == 1 and df.violations == []


def test_cli_run_once_unreachable_controller(tmp_path: Path, api: FakeApiserver) -> None:
    kc = write_kubeconfig(tmp_path / "kc", api)
    proc = subprocess.run([sys.executable, "-m", "hostagent", "k8s-sync", "run", "--once", "--controller-ip", "127.0.0.1",
                           "--controller-port", str(free_port()), "--cluster-id", "d-abc123", "--kubeconfig", kc],
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("hostagent k8s-sync run: error: 127.0.0.1:")


def test_tls_controller_and_interval_reports(tmp_path: Path, api: FakeApiserver) -> None:
    """A controller that only speaks TLS (the server's ssl-grpc-port); with nothing changing, the full
    set still goes out every --interval, with the same version."""
    tls = FakeDeepflowGrpc(tls={"cert": api.tls["cert"], "key": api.tls["key"]}).start()
    try:
        opts = build_k8s_sync({"controller_ips": ["127.0.0.1"], "controller_port": tls.port, "cluster_id": "d-abc123",
                               "kubeconfig": write_kubeconfig(tmp_path / "kc", api), "interval": "2", "tls_ca": api.tls["ca"]})
        reporter = Reporter(list(opts.controller_ips), opts.controller_port, timeout=5, tls=opts.tls, ca_file=opts.tls_ca)
        running = Running(Runner(opts, kube.load(opts.kubeconfig), reporter))
        try:
            reports = tls.wait(lambda rs: len(rs) >= 3, timeout=30)
        finally:
            running.stop()
        assert len({r["version"] for r in reports}) == 1 and all(len(r["objects"]["*v1.Pod"]) == 3 for r in reports)
        gaps = [b["received_at"] - a["received_at"] for a, b in zip(reports, reports[1:])]
        assert all(1.5 < g < 4 for g in gaps), gaps
        assert tls.violations == []
    finally:
        tls.stop()
