"""k8s-sync at scale: memory and encode time for synthetic clusters, trimming savings, and memory
over a churn run.

    .venv/bin/python bench/k8s_sync_bench.py [--sizes 1000x30000,5000x150000] [--churn-seconds 300]

Each size runs in a fresh process. Objects are generated one at a time as the apiserver would serve
them (full pods: managedFields, several containers with images, ports, probes, resources, volumes,
status with container statuses), fed to the store (trim → compact JSON → zlib → encoded entry),
then dropped, so RSS is what k8s-sync keeps. Reported:
- rss_mib: the process's RSS once the whole cluster is stored (interpreter + grpc + kubernetes
  imports included, as in the service);
- ingest_s: trimming + encoding every object (what the first list costs, JSON parsing not included);
- report_s: building the full KubernetesAPISyncRequest from the store (what each report costs), with
  --max-message-mib 256 so the largest one is built; rss_with_request_mib: RSS while it is held;
- at_100_mib: what the default limit lets through (full / without ConfigMaps / not sent);
- report_mib: that request's size; full_json_mib / full_zlib_mib: the same objects untrimmed, as
  JSON and as per-object zlib (what sending the full objects would take).
The churn run creates a pod, deletes an old one and now and then relabels one (about 100 changes/s,
the pod count constant) and builds a full report every 60 s, sampling RSS every 10 s.

    sudo .venv/bin/python bench/k8s_sync_bench.py --exe FILE[,FILE...] [--sizes ...]

--exe: the same clusters through a real `k8s-sync run --once --max-message-mib 256` of each executable
(the single file; the venv's .venv/bin/hostagent for comparison), run as nobody (the file unpacks
privately: this machine's /var/cache/hostagent is not touched), against a bench apiserver on loopback
serving the objects pre-encoded (pages of 500, as k8s-sync asks; it costs next to nothing, so the
list time is k8s-sync's) and a gRPC sink that accepts 256 MiB and answers at once. Reported per
executable: peak_rss_mib (the k8s-sync process's VmHWM, read every 0.1 s: all but its last 0.1 s),
rss_at_report_mib (the last RSS sample before the report is logged), first_list_s (start to the last type listed: start-up,
/version, every list, trim and encode), build_s (the request built from the store, from --json),
report_mib (its size), wall_s."""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
import zlib
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


LIMIT = 256 << 20  # --max-message-mib 256, so that the 150k-pod report is built (it is over the default 100)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def full_pod(i: int, node: str, rs_uid: str, ns: str) -> dict[str, Any]:
    name = f"app-{i // 10}-7d9f8c6b5-{i:06x}"
    containers = []
    statuses = []
    for c in ("app", "sidecar"):
        containers.append({
            "name": c, "image": f"registry.example/team/{c}:1.{i % 7}.3", "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "ENV", "value": "prod"}, {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10},
            "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access", "readOnly": True}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"})
        statuses.append({"name": c, "containerID": "containerd://" + uuid.uuid4().hex + uuid.uuid4().hex,
                         "image": f"registry.example/team/{c}:1.{i % 7}.3", "imageID": "sha256:" + uuid.uuid4().hex * 2,
                         "ready": True, "restartCount": 0, "started": True,
                         "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                         "lastState": {}})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "generateName": name[:-6],
                     "resourceVersion": str(1000 + i), "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {"app": f"app-{i // 10}", "pod-template-hash": "7d9f8c6b5", "team": "payments"},
                     "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"app-{i // 10}-7d9f8c6b5",
                                          "uid": rs_uid, "controller": True, "blockOwnerDeletion": True}],
                     "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                                        "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}},
                                                                    "f:ownerReferences": {}},
                                                     "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {}}}}}},
                                       {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "subresource": "status",
                                        "time": "2026-01-01T00:00:05Z", "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:podIP": {}}}}]},
        "spec": {"containers": containers, "nodeName": node, "serviceAccountName": "default", "restartPolicy": "Always",
                 "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
                 "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "tolerationSeconds": 300}],
                 "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                     {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                     {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}],
                                    "name": "kube-root-ca.crt"}}]}}]},
        "status": {"phase": "Running", "hostIP": f"10.{i % 250}.{(i // 250) % 250}.1",
                   "podIP": f"172.{16 + i % 16}.{(i // 16) % 250}.{i % 250}",
                   "podIPs": [{"ip": "172.16.0.1"}], "qosClass": "Burstable", "startTime": "2026-01-01T00:00:00Z",
                   "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": "2026-01-01T00:00:00Z"}
                                  for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "containerStatuses": statuses}}


def full_node(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i}", "uid": str(uuid.uuid4()), "resourceVersion": str(i),
                         "labels": {"kubernetes.io/hostname": f"node-{i}", "kubernetes.io/os": "linux",
                                    "node.kubernetes.io/instance-type": "m5.xlarge",
                                    "topology.kubernetes.io/zone": f"zone-{i % 3}"},
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                         "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {"f:images": {}}}}]},
            "spec": {"podCIDR": f"172.16.{i % 250}.0/24", "podCIDRs": [f"172.16.{i % 250}.0/24"], "providerID": f"aws:///zone/i-{i:017x}"},
            "status": {"addresses": [{"type": "InternalIP", "address": f"10.{i % 250}.{(i // 250) % 250}.1"},
                                     {"type": "Hostname", "address": f"node-{i}"}],
                       "capacity": {"cpu": "4", "memory": "16092196Ki", "pods": "110", "ephemeral-storage": "104845292Ki"},
                       "allocatable": {"cpu": "3920m", "memory": "15000000Ki", "pods": "110"},
                       "conditions": [{"type": t, "status": "False" if t != "Ready" else "True", "reason": f"Kubelet{t}",
                                       "message": "kubelet is posting ready status", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}
                                      for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")],
                       "images": [{"names": [f"registry.example/team/app:1.{k}.3"], "sizeBytes": 100000000 + k} for k in range(20)],
                       "nodeInfo": {"kernelVersion": "6.1.0-18-amd64", "kubeletVersion": "v1.29.4", "osImage": "Debian GNU/Linux 12",
                                    "containerRuntimeVersion": "containerd://1.7.13", "machineID": uuid.uuid4().hex}}}


def workload(kind: str, i: int, ns: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": f"app-{i}", "namespace": ns, "uid": uid, "labels": {"app": f"app-{i}"},
                         "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"replicas": 10, "selector": {"matchLabels": {"app": f"app-{i}"}},
                     "template": {"metadata": {"labels": {"app": f"app-{i}"}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.example/team/app:1.0.3"}]}}},
            "status": {"replicas": 10, "readyReplicas": 10}}


def generate(nodes: int, pods: int):
    """(resource, object) pairs, produced lazily."""
    namespaces = [f"ns-{k}" for k in range(max(1, pods // 1500))]
    for ns in namespaces:
        yield "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": str(uuid.uuid4())},
                             "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    for i in range(nodes):
        yield "nodes", full_node(i)
    rs_uids = []
    for i in range(pods // 10):
        ns = namespaces[i % len(namespaces)]
        yield "deployments", workload("Deployment", i, ns, str(uuid.uuid4()))
        rs_uid = str(uuid.uuid4())
        rs_uids.append(rs_uid)
        yield "replicasets", workload("ReplicaSet", i, ns, rs_uid)
        yield "services", {"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": f"app-{i}", "namespace": ns, "uid": str(uuid.uuid4()), "labels": {"app": f"app-{i}"}},
                           "spec": {"type": "ClusterIP", "clusterIP": f"10.96.{i // 250 % 250}.{i % 250}", "selector": {"app": f"app-{i}"},
                                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
                           "status": {"loadBalancer": {}}}
        if i % 2 == 0:
            yield "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": f"app-{i}-config", "namespace": ns, "uid": str(uuid.uuid4())},
                                 "data": {"app.yaml": "log_level: info\nfeature_x: true\n" * 4}}
    for i in range(pods):
        yield "pods", full_pod(i, f"node-{i % nodes}", rs_uids[(i // 10) % len(rs_uids)], namespaces[(i // 10) % len(namespaces)])


def one_size(nodes: int, pods: int, churn_seconds: float) -> dict[str, Any]:
    import gc

    import grpc  # noqa: F401  (as the service has it loaded)
    import kubernetes.config  # noqa: F401

    from hostagent.k8ssync.resources import RESOURCES
    from hostagent.k8ssync.runner import build_request
    from hostagent.k8ssync.store import Store

    base = rss_mib()
    store = Store(RESOURCES, version=int(time.time()))
    full_json = full_zlib = 0
    ingest = 0.0
    pod_samples: list[dict[str, Any]] = []
    for r in RESOURCES:
        store.begin_list(r.name)
    for resource, obj in generate(nodes, pods):
        raw = json.dumps(obj, separators=(",", ":")).encode()
        full_json += len(raw)
        full_zlib += len(zlib.compress(raw, 6))
        t = time.perf_counter()
        store.upsert(resource, obj)
        ingest += time.perf_counter() - t
        if resource == "pods" and len(pod_samples) < 200:
            pod_samples.append(obj)
    for r in RESOURCES:
        store.end_list(r.name)
    store.set_version_info({"gitVersion": "v1.29.4", "major": "1", "minor": "29"})
    gc.collect()
    loaded = rss_mib()
    snap = store.snapshot()
    request, error_msg, n = build_request(snap, "d-bench00001", "192.0.2.1", None)  # the default 100 MiB limit
    sent = "full" if request and not error_msg else "without ConfigMaps" if request else "not sent (over 100 MiB)"
    del request
    t = time.perf_counter()
    snap = store.snapshot()
    request, error_msg, n = build_request(snap, "d-bench00001", "192.0.2.1", None, limit=LIMIT)
    report_s = time.perf_counter() - t
    report_rss = rss_mib()  # with the whole request in memory
    size = sum(map(len, snap.entries + snap.optional))
    without_configmaps = sum(map(len, snap.entries))
    del request, snap
    gc.collect()
    out: dict[str, Any] = {"nodes": nodes, "pods": pods, "objects": sum(store.count(r.name) for r in RESOURCES),
                           "rss_base_mib": round(base, 1), "rss_mib": round(loaded, 1), "ingest_s": round(ingest, 2),
                           "report_s": round(report_s, 3), "rss_with_request_mib": round(report_rss, 1),
                           "report_mib": round(size / 2**20, 1),
                           "report_without_configmaps_mib": round(without_configmaps / 2**20, 1), "at_100_mib": sent,
                           "full_json_mib": round(full_json / 2**20, 1), "full_zlib_mib": round(full_zlib / 2**20, 1)}
    if churn_seconds:
        from collections import deque

        rng = random.Random(1)
        live = deque(pod_samples)
        samples = []
        start = last_sample = last_report = time.monotonic()
        changes = 0
        peak_report = loaded
        while time.monotonic() - start < churn_seconds:
            p = dict(rng.choice(pod_samples))
            p["metadata"] = dict(p["metadata"], uid=str(uuid.uuid4()), labels={"app": "churn", "n": str(changes)})
            store.upsert("pods", p)  # a new pod (ADDED) ...
            live.append(p)
            store.delete("pods", live.popleft())  # ... and an old one gone (DELETED): the count stays
            if changes % 5 == 0:  # and a label change on a live one (MODIFIED)
                q = live[rng.randrange(len(live))]
                q["metadata"] = dict(q["metadata"], labels={"app": "churn", "m": str(changes)})
                store.upsert("pods", q)
            changes += 3 if changes % 5 == 0 else 2
            now = time.monotonic()
            if now - last_report >= 60:
                snap = store.snapshot()
                request, _, _ = build_request(snap, "d-bench00001", "192.0.2.1", None, limit=LIMIT)
                peak_report = max(peak_report, rss_mib())
                del request, snap
                last_report = now
            if now - last_sample >= 10:
                samples.append(round(rss_mib(), 1))
                last_sample = now
            time.sleep(0.02)
        out.update(churn_seconds=churn_seconds, churn_changes=changes, churn_rss_mib=samples,
                   churn_rss_peak_during_report_mib=round(peak_report, 1), pods_after=store.count("pods"))
    return out


def serve_cluster(nodes: int, pods: int) -> Any:
    """An HTTP apiserver for k8s-sync's lists only: every object encoded once, pages by offset; a watch
    is held open with nothing in it (run --once ends after its report)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    encoded: dict[str, list[bytes]] = {}
    for resource, obj in generate(nodes, pods):
        encoded.setdefault(resource, []).append(json.dumps(obj, separators=(",", ":")).encode())
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/version":
                body = b'{"gitVersion":"v1.29.4","major":"1","minor":"29"}'
            elif q.get("watch"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                stop.wait(float(q.get("timeoutSeconds", "300")))
                return
            else:
                items = encoded.get(url.path.rsplit("/", 1)[1], [])
                offset, limit = int(q.get("continue") or 0), int(q.get("limit") or 0) or len(items)
                meta = {"resourceVersion": "100"}
                if offset + limit < len(items):
                    meta["continue"] = str(offset + limit)
                body = b'{"kind":"List","apiVersion":"v1","metadata":' + json.dumps(meta).encode() + b',"items":[' + \
                    b",".join(items[offset:offset + limit]) + b"]}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, stop


def grpc_sink(limit: int) -> Any:
    """deepflow-server's KubernetesAPISync, accepting `limit` bytes and answering at once."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.max_receive_message_length", limit)])
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("agent.Synchronizer", {"KubernetesAPISync": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def one_file_run(exe: str, nodes: int, pods: int) -> dict[str, Any]:
    """`exe k8s-sync run --once` as nobody against serve_cluster() and grpc_sink()."""
    import tempfile
    import threading

    httpd, stop = serve_cluster(nodes, pods)
    sink, port = grpc_sink(LIMIT)
    work = tempfile.mkdtemp(prefix="k8s-sync-bench-")
    os.chmod(work, 0o755)
    kubeconfig = os.path.join(work, "kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
current-context: b
clusters: [{{name: b, cluster: {{server: "http://127.0.0.1:{httpd.server_address[1]}"}}}}]
users: [{{name: u, user: {{token: bench}}}}]
contexts: [{{name: b, context: {{cluster: b, user: u}}}}]
""")
    os.chmod(kubeconfig, 0o644)
    tmpdir = os.path.join(work, "tmp")  # nobody's: the single file unpacks there
    os.mkdir(tmpdir, 0o700)
    os.chown(tmpdir, 65534, 65534)
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", exe, "k8s-sync", "run", "--once", "--json",
            "--controller-ip", "127.0.0.1", "--controller-port", str(port), "--cluster-id", "d-bench00001",
            "--kubeconfig", kubeconfig, "--max-message-mib", str(LIMIT >> 20)]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            env={"PATH": "/usr/bin:/bin", "TMPDIR": tmpdir, "HOME": tmpdir, "LANG": "C.UTF-8"})
    rss: list[float] = [0.0]
    peak = [0.0, 0.0]  # the highest sample, and when (s after the start)
    # VmHWM per process: its mm's own peak. Not wait4's maxrss: a child's starts at this process's RSS
    # at fork (exec keeps it), and this one holds the whole encoded cluster.
    hwm: dict[int, float] = {}
    reported_at: list[float] = []
    at_report: list[float] = []
    last_listed: list[float] = []

    done = threading.Event()

    def sample() -> None:
        while not done.is_set():  # not proc.poll(): it would reap the process before waitpid
            for pid in [proc.pid, *_children(proc.pid)]:
                try:
                    with open(f"/proc/{pid}/status") as f:
                        fields = {k: int(v.split()[0]) / 1024 for k, _, v in (line.partition(":") for line in f)
                                  if k in ("VmRSS", "VmHWM")}
                    now = fields.get("VmRSS", 0.0)
                    hwm[pid] = max(hwm.get(pid, 0.0), fields.get("VmHWM", 0.0))
                    rss.append(now)
                    if now > peak[0]:
                        peak[:] = [now, time.monotonic() - start]
                except OSError:
                    pass
            time.sleep(0.1)

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if ": listed " in line:
                last_listed.append(time.monotonic() - start)
            elif "reported version" in line or "not sent" in line:
                at_report.append(rss[-1])
                reported_at.append(time.monotonic() - start)
            errors.append(line)

    errors: list[str] = []
    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in threads:
        t.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status = os.waitpid(proc.pid, 0)
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    for t in threads:
        t.join(5)
    stop.set()
    httpd.shutdown()
    sink.stop(0)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{exe}: rc={proc.returncode}: {''.join(errors)[-2000:]}")
    report = json.loads(out)["data"]["report"]
    return {"exe": exe, "nodes": nodes, "pods": pods, "objects": report["entries"], "peak_rss_mib": round(max(hwm.values()), 1),
            "rss_at_report_mib": round(at_report[-1], 1) if at_report else None,
            "first_list_s": round(max(last_listed), 2) if last_listed else None, "build_s": report.get("build_s"),
            "report_mib": round(report["size"] / 2**20, 1), "wall_s": round(wall, 2),
            "peak_sampled_mib": round(peak[0], 1), "peak_sampled_at_s": round(peak[1], 2),
            "reported_at_s": round(reported_at[-1], 2) if reported_at else None}


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1000x30000,5000x150000")
    p.add_argument("--churn-seconds", type=float, default=0.0, help="churn run length (on the largest size)")
    p.add_argument("--exe", default="", help="comma-separated executables to run k8s-sync from (the single file, a venv's)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--one-exe", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one and a.one_exe:
        nodes, pods = (int(x) for x in a.one.split("x"))
        print(json.dumps(one_file_run(a.one_exe, nodes, pods)))
        return
    if a.exe:
        for size in a.sizes.split(","):
            for exe in a.exe.split(","):
                proc = subprocess.run([sys.executable, __file__, "--one", size, "--one-exe", os.path.abspath(exe)],
                                      capture_output=True, text=True, check=False)
                print(proc.stdout.strip() or proc.stderr[-2000:], flush=True)
        return
    if a.one:
        nodes, pods = (int(x) for x in a.one.split("x"))
        print(json.dumps(one_size(nodes, pods, a.churn_seconds)))
        return
    sizes = a.sizes.split(",")
    for k, size in enumerate(sizes):
        churn = a.churn_seconds if k == len(sizes) - 1 else 0.0
        proc = subprocess.run([sys.executable, __file__, "--one", size, "--churn-seconds", str(churn)],
                              capture_output=True, text=True, check=True)
        print(proc.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
