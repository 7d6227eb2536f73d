"""k8s-sync's pieces without a network: the hand encoding (checked against protoc's classes for our
own .proto), the trimming, versioning, the size guard, options and the unit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import pytest

from hostagent.errors import InputError
from hostagent.k8ssync import proto
from hostagent.k8ssync.install import config_yaml, flatten_kubeconfig, render_unit
from hostagent.k8ssync.resources import BY_NAME, RESOURCES, TYPE_NAMES
from hostagent.k8ssync.runner import build_request
from hostagent.k8ssync.store import Store
from hostagent.options import build_k8s_sync
from tests.fixtures.fake_apiserver import node, pod, simple
from tests.fixtures.fake_deepflow_grpc import check_request, compiled


def test_request_round_trip_with_protobuf() -> None:
    pb = compiled()
    entries = [proto.entry("*v1.Pod", zlib.compress(b'{"kind":"Pod"}')), proto.entry("*version.Info", b"\x78\x9c")]
    raw = proto.sync_request(proto.sync_request_head("d-abc", 2**40 + 3, "pods: down", "192.0.2.1", "t-1"), entries)
    msg = pb.KubernetesAPISyncRequest.FromString(raw)
    assert (msg.cluster_id, msg.version, msg.error_msg, msg.source_ip, msg.team_id, msg.agent_id) == (
        "d-abc", 2**40 + 3, "pods: down", "192.0.2.1", "t-1", 0)
    assert [e.type for e in msg.entries] == ["*v1.Pod", "*version.Info"]
    assert msg.entries[0].compressed_info == zlib.compress(b'{"kind":"Pod"}') and not msg.entries[0].HasField("info")
    # and protobuf's own encoding decodes with ours
    again = proto.decode_sync_request(msg.SerializeToString())
    assert again["version"] == 2**40 + 3 and again["entries"][1]["type"] == "*version.Info"


def test_response_and_cluster_id_messages() -> None:
    assert proto.decode_sync_response(proto.sync_response(7)) == 7
    assert proto.decode_sync_response(proto.sync_response(None)) is None
    assert proto.decode_cluster_id_request(proto.cluster_id_request("abc", "t", "prod")) == {
        "ca_md5": "abc", "team_id": "t", "kubernetes_cluster_name": "prod"}
    assert proto.decode_cluster_id_response(proto.cluster_id_response("d-x")) == ("d-x", "")
    assert proto.decode_cluster_id_response(proto.cluster_id_response(error_msg="nope")) == ("", "nope")
    # field 46 takes a two-byte key
    assert proto.cluster_id_request(None, None, "x")[:2] == bytes([0xF2, 0x02])


@pytest.mark.parametrize("raw", [b"\x08", b"\x0a\x05abc", b"\x0b", b"\x80" * 11])
def test_decoder_refuses_broken_input(raw: bytes) -> None:
    with pytest.raises(proto.DecodeError):
        proto.decode_sync_request(raw)


def test_pod_trimmed_as_the_real_agent() -> None:
    p = pod("web-0")
    out = BY_NAME["pods"].trimmed(p)
    assert out["apiVersion"] == "v1" and out["kind"] == "Pod"
    assert set(out["metadata"]) == {"uid", "name", "namespace", "ownerReferences", "creationTimestamp", "labels", "annotations"}
    assert out["spec"] == {"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}], "nodeName": "node-1"}
    assert set(out["status"]) == {"hostIP", "conditions", "containerStatuses", "podIP"}
    assert out["status"]["containerStatuses"] == [{"containerID": p["status"]["containerStatuses"][0]["containerID"]}]


def test_other_kinds_trimmed() -> None:
    n = BY_NAME["nodes"].trimmed(node("n1"))
    assert set(n["metadata"]) == {"uid", "name", "labels"} and n["spec"] == {"podCIDR": "10.0.0.0/24"}
    assert n["status"]["conditions"] == [{"reason": "KubeletReady", "status": "True"}] and "images" not in n["status"]
    ns = BY_NAME["namespaces"].trimmed(simple("Namespace", "kube-system", None, spec={"finalizers": []}))
    assert set(ns) == {"apiVersion", "kind", "metadata"} and set(ns["metadata"]) == {"uid", "name"}
    d = BY_NAME["deployments"].trimmed(simple("Deployment", "web", spec={"replicas": 2}, status={"replicas": 2}))
    assert "managedFields" not in d["metadata"] and d["spec"] == {"replicas": 2} and "status" not in d
    assert d["apiVersion"] == "apps/v1"
    svc = BY_NAME["services"].trimmed(simple("Service", "s", spec={"clusterIP": "10.96.0.1"},
                                             status={"loadBalancer": {"ingress": [{"ip": "192.0.2.5"}]}, "conditions": []}))
    assert svc["status"] == {"loadBalancer": {"ingress": [{"ip": "192.0.2.5"}]}}
    ing = BY_NAME["ingresses"].trimmed(simple("Ingress", "i", spec={"rules": []}, status={"loadBalancer": {}}))
    assert ing["apiVersion"] == "networking.k8s.io/v1" and "status" not in ing and set(ing["metadata"]) == {"uid", "name", "namespace"}
    cm = BY_NAME["configmaps"].trimmed(simple("ConfigMap", "c", data={"a": "b"}))
    assert cm["data"] == {"a": "b"} and "labels" not in cm["metadata"]
    rs = BY_NAME["replicasets"].trimmed(simple("ReplicaSet", "r", spec={"replicas": 1, "selector": {}, "template": {"x": 1}}))
    assert rs["spec"] == {"replicas": 1, "selector": {}}


def test_type_strings() -> None:
    assert {"*version.Info", "*v1.Node", "*v1.Namespace", "*v1.Pod", "*v1.Service", "*v1.Deployment",
                          "*v1.ReplicaSet", "*v1.StatefulSet", "*v1.DaemonSet", "*v1.ReplicationController",
                          "*v1.ConfigMap", "*v1.Ingress"} == TYPE_NAMES


def _store() -> Store:
    s = Store(RESOURCES, version=1000)
    s.set_version_info({"gitVersion": "v1.29.4", "major": "1", "minor": "29"})
    return s


def test_versioning() -> None:
    s = _store()
    p = pod("a")
    s.begin_list("pods")
    s.upsert("pods", p)
    s.end_list("pods")
    first = s.snapshot()
    assert first.version == 1000 and first.counts["*v1.Pod"] == 1  # unix seconds at start: the first report
    assert s.snapshot().version == 1000  # nothing changed
    p2 = json.loads(json.dumps(p))
    p2["metadata"]["resourceVersion"] = "999"
    p2["status"]["qosClass"] = "Guaranteed"  # not kept by trimming: no change
    assert not s.upsert("pods", p2)
    assert s.snapshot().version == 1000
    p2["metadata"]["labels"] = {"app": "b"}
    assert s.upsert("pods", p2)
    s.upsert("pods", pod("b"))  # two changes before a report: one step
    assert s.snapshot().version == 1001
    s.delete("pods", p2)
    assert s.snapshot().version == 1002
    s.set_error("pods", "HTTP 503")  # a failure keeps the version
    snap = s.snapshot()
    assert snap.version == 1002 and snap.error_msg == "pods: HTTP 503" and snap.counts["*v1.Pod"] == 1
    s.begin_list("pods")  # a relist that no longer holds b: b is gone, a change
    s.end_list("pods")
    snap = s.snapshot()
    assert snap.version == 1003 and snap.counts["*v1.Pod"] == 0 and snap.error_msg == ""


def test_notes_are_said_once() -> None:
    """A note (a list that needed the unpaged fallback) goes in one report's error_msg, beside the
    errors of the moment; a report that could not be sent gives it back for the next."""
    s = _store()
    s.set_error("nodes", "HTTP 503")
    s.note("pods", "continue token expired")
    assert s.error_text() == "nodes: HTTP 503;pods: continue token expired"
    failed = s.snapshot()
    assert failed.error_msg == "nodes: HTTP 503;pods: continue token expired" and s.reported_errors == "nodes: HTTP 503"
    s.unsent(failed)
    assert s.snapshot().error_msg == "nodes: HTTP 503;pods: continue token expired"
    assert s.snapshot().error_msg == "nodes: HTTP 503", "said once"
    assert s.error_text() == s.reported_errors, "no report is due for the note's going"


def test_entries_decode_to_the_contract() -> None:
    s = _store()
    for r, obj in (("pods", pod("a")), ("nodes", node("n")), ("configmaps", simple("ConfigMap", "c", data={})),
                   ("namespaces", simple("Namespace", "default", None))):
        s.upsert(r, obj)
    snap = s.snapshot()
    raw, error_msg, n = build_request(snap, "d-abc", "192.0.2.1", None)
    assert raw is not None and n == 5 and error_msg == ""
    report, problems = check_request(raw)
    assert problems == []
    assert {t: len(v) for t, v in report["objects"].items()} == {
        "*version.Info": 1, "*v1.Pod": 1, "*v1.Node": 1, "*v1.ConfigMap": 1, "*v1.Namespace": 1}
    assert report["objects"]["*version.Info"][0]["gitVersion"] == "v1.29.4"


def test_size_guard() -> None:
    s = _store()
    s.upsert("pods", pod("a"))
    s.upsert("configmaps", simple("ConfigMap", "big", data={"blob": os.urandom(6000).hex()}))
    snap = s.snapshot()
    full = sum(map(len, snap.entries + snap.optional))
    raw, error_msg, n = build_request(snap, "d-abc", None, None, limit=full - 1000 + 4096)
    assert raw is not None and n == 2 and "ConfigMaps left out" in error_msg
    assert "*v1.ConfigMap" not in check_request(raw)[0]["objects"]
    raw, error_msg, n = build_request(snap, "d-abc", None, None, limit=200)
    assert raw is None


@pytest.mark.parametrize("values, message", [
    ({}, "at least one --controller-ip"),
    ({"controller_ips": ["bad host!"]}, "malformed controller IP or host name"),
    # install's grammar: all digits and dots is an IP or nothing, never a host name
    ({"controller_ips": ["300.1.1.1"]}, "malformed controller IP or host name '300.1.1.1'"),
    ({"controller_ips": ["10.0.0.1"], "max_message_mib": "2047"}, r"--max-message-mib out of range: 2047 \(1-2046"),
    ({"controller_ips": ["10.0.0.1"], "max_message_mib": "0"}, "--max-message-mib out of range"),
    ({"controller_ips": ["10.0.0.1"], "controller_port": "0"}, "out of range"),
    ({"controller_ips": ["10.0.0.1"], "cluster_id": "bad id"}, "invalid cluster id"),
    ({"controller_ips": ["10.0.0.1"], "team_id": "a b"}, "invalid team id"),
    ({"controller_ips": ["10.0.0.1"], "interval": "0.5"}, "--interval out of range"),
    ({"controller_ips": ["10.0.0.1"], "interval": "86401"}, "--interval out of range"),
    ({"controller_ips": ["10.0.0.1"], "interval": "1e3"}, "number of seconds"),
    ({"controller_ips": ["10.0.0.1"], "kubeconfig": "relative/kc"}, "absolute path"),
    ({"controller_ips": ["10.0.0.1"], "user": "root"}, "invalid user"),
])
def test_options_refused(values: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build_k8s_sync(values)


def test_options_and_config_file_keys() -> None:
    opts = build_k8s_sync({"interval": "30"}, {"controller-ips": ["deepflow.example", "10.0.0.2"], "team-id": "t-1",
                                               "configmaps": False, "controller-port": 20035})
    assert opts.controller_ips == ("deepflow.example", "10.0.0.2") and opts.interval == 30.0
    assert opts.team_id == "t-1" and not opts.configmaps and opts.controller_port == 20035
    with pytest.raises(InputError, match="unknown key 'agent-group'"):
        build_k8s_sync({}, {"controller-ips": ["10.0.0.1"], "agent-group": "x"})
    with pytest.raises(InputError, match="true or false"):
        build_k8s_sync({}, {"controller-ips": ["10.0.0.1"], "tls": "yes"})
    # what install writes for the service reads back to the same options
    import yaml

    again = build_k8s_sync({}, yaml.safe_load(config_yaml(opts)))
    assert again.controller_ips == opts.controller_ips and again.team_id == "t-1" and not again.configmaps


def test_max_message_bound_is_grpcs() -> None:
    """The largest --max-message-mib makes a real gRPC channel; one more overflows gRPC's C int."""
    from hostagent.k8ssync.reporter import Reporter
    from hostagent.options import K8S_SYNC_MAX_MESSAGE_MIB

    opts = build_k8s_sync({"controller_ips": ["127.0.0.1"], "max_message_mib": str(K8S_SYNC_MAX_MESSAGE_MIB)})
    Reporter(["127.0.0.1"], 1, max_message=opts.max_message_mib << 20)._channel("127.0.0.1").close()
    with pytest.raises(OverflowError):
        Reporter(["127.0.0.1"], 1, max_message=(opts.max_message_mib + 1) << 20)._channel("127.0.0.1")


def hostagent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostagent", *args], capture_output=True, text=True, cwd="/", check=False)


@pytest.mark.parametrize("command", ["run", "install"])
def test_cli_bad_input_one_line_exit_2(command: str) -> None:
    proc = hostagent("k8s-sync", command, "--controller-ip", "10.0.0.1", "--interval", "0")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"hostagent k8s-sync {command}: error: --interval out of range")
    for bad, message in ((["--controller-ip", "300.1.1.1"], "malformed controller IP or host name '300.1.1.1'"),
                         (["--controller-ip", "10.0.0.1", "--max-message-mib", "2047"], "--max-message-mib out of range")):
        proc = hostagent("k8s-sync", command, *bad)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"hostagent k8s-sync {command}: error: {message}"), proc.stderr
    proc = hostagent("k8s-sync", command, "--controller-ip", "10.0.0.1", "--kubeconfig", "/nonexistent/kc", "--json")
    obj = json.loads(proc.stdout)
    assert proc.returncode == 2 and obj["exit_code"] == 2 and obj["command"] == f"k8s-sync {command}"
    # install refuses a host without systemd first (this machine's PID 1 may be anything).
    systemd = os.path.isdir("/run/systemd/system")
    assert ("/nonexistent/kc" if command == "run" or systemd else "k8s-sync install needs systemd") in obj["error"]


def test_flattened_kubeconfig(tmp_path) -> None:
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    (tmp_path / "token").write_text("s3cret\n")
    kc = tmp_path / "config"
    kc.write_text("""apiVersion: v1
kind: Config
current-context: b
clusters:
- {name: a, cluster: {server: "https://192.0.2.1:6443"}}
- {name: c, cluster: {server: "https://192.0.2.2:6443", certificate-authority: ca.crt}}
users:
- {name: u, user: {tokenFile: token}}
contexts:
- {name: a, context: {cluster: a, user: u}}
- {name: b, context: {cluster: c, user: u, namespace: x}}
""")
    import base64

    import yaml

    flat = yaml.safe_load(flatten_kubeconfig(str(kc)))
    assert [c["name"] for c in flat["clusters"]] == ["c"] and flat["current-context"] == "b"
    assert base64.b64decode(flat["clusters"][0]["cluster"]["certificate-authority-data"]).startswith(b"-----BEGIN")
    assert flat["users"][0]["user"] == {"token": "s3cret"}


def test_unit_has_no_capabilities() -> None:
    text = render_unit("deepflow-k8s", "deepflow-k8s", launcher="/opt/hostagent/bin/python3 -I -m hostagent")
    lines = text.splitlines()
    assert "CapabilityBoundingSet=" in lines and "AmbientCapabilities=" in lines and "NoNewPrivileges=yes" in lines
    assert "User=deepflow-k8s" in lines and "ProtectSystem=strict" in lines
    assert "ExecStart=/opt/hostagent/bin/python3 -I -m hostagent k8s-sync run --config-file /etc/hostagent-k8s-sync/config.yaml" in lines
    assert not any(line.startswith("ExecStartPre") for line in lines)


def test_unit_from_the_single_file_calls_the_file(monkeypatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/usr/sbin/hostagent")
    lines = render_unit("deepflow-k8s", "deepflow-k8s").splitlines()
    assert "ExecStart=/usr/sbin/hostagent k8s-sync run --config-file /etc/hostagent-k8s-sync/config.yaml" in lines


def test_rbac_covers_every_watched_resource() -> None:
    import yaml

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "k8s-sync-rbac.yaml")) as f:
        docs = list(yaml.safe_load_all(f))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {(g, r) for rule in role["rules"] if "resources" in rule for g in rule["apiGroups"] for r in rule["resources"]
               if set(rule["verbs"]) == {"list", "watch"}}
    assert granted == {(r.group, r.name) for r in RESOURCES}
    assert any(rule.get("nonResourceURLs") == ["/version"] for rule in role["rules"])


def test_two_manifests_share_the_state_dir(tmp_path) -> None:
    """k8s-sync's manifest made the state dir, the agent's came later: removing k8s-sync's leaves the
    dir (and the agent's backups) for the agent's, whose removal then takes the dir away."""
    state = tmp_path / "state"
    script = f"""
import json, os
from hostagent import manifest
from hostagent.host import paths
assert paths.STATE_DIR == {str(state)!r}
k8s = manifest.Manifest.new({{}}, {{}}, paths.K8S_SYNC_MANIFEST); k8s.save()
agent = manifest.Manifest.new({{}}, {{}}); agent.data["steps"] = []; agent.save()
os.makedirs(paths.BACKUP_DIR); open(paths.BACKUP_DIR + "/b1", "w").close()
agent.data["steps"].append({{"id": "file:/x", "kind": "file", "params": {{"path": "/x", "content": "", "mode": 420,
    "owner": "root", "group": "root"}}, "record": {{"backup": paths.BACKUP_DIR + "/b1"}}}})
agent.save()
assert k8s.data["state_dir_created"] and not agent.data["state_dir_created"]
k8s.remove()
assert os.path.isdir(paths.STATE_DIR) and os.path.exists(paths.BACKUP_DIR + "/b1")
again = manifest.load()
assert again.data["state_dir_created"]
again.data["steps"] = []; again.save(); again.remove()
assert not os.path.exists(paths.STATE_DIR)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "HOSTAGENT_STATE_DIR": str(state)},
                          capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "ok", proc.stderr


SECRET_KEY = "c2VjcmV0LWNsaWVudC1rZXktYnl0ZXM="  # what a client-key-data would hold
SECRET_TOKEN = "s3cret-token-value"


def secret_kubeconfig() -> str:
    return f"""apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: c, cluster: {{server: "https://192.0.2.1:6443"}}}}]
users: [{{name: u, user: {{client-key-data: {SECRET_KEY}, token: {SECRET_TOKEN}}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
"""


def test_install_never_prints_the_kubeconfigs_secrets(tmp_path, capsys) -> None:
    """Every output of `k8s-sync install` that carries diffs: the dry run and the interactive preview
    (planned steps through Style.progress), --verbose (applied steps' diffs) and --json (each step's
    diff): the kubeconfig shows as its size and sha256, never its text."""
    import hashlib

    from hostagent import engine
    from hostagent.cli.output import Style, from_outcome
    from hostagent.k8ssync.install import KUBECONFIG, plan
    from hostagent.steps.files import File

    from hostagent.host import Host, using

    kubeconfig = secret_kubeconfig()
    opts = build_k8s_sync({"controller_ips": ["10.0.0.1"], "kubeconfig": "/root/kc"})
    with using(Host(init="systemd")):  # the plan of a systemd host, read only
        steps = plan(opts, "deepflow-k8s", kubeconfig)
    summary = f"(secret, {len(kubeconfig.encode())} bytes, sha256 {hashlib.sha256(kubeconfig.encode()).hexdigest()})"

    outcome = engine.install(steps, {}, {}, dry_run=True, progress=Style().progress,
                             manifest_path=str(tmp_path / "manifest.json"))  # --dry-run and the preview
    for result in outcome.steps:  # --verbose prints the diffs of applied steps
        Style(verbose=True).progress(engine.StepResult(result.id, result.title, "applied", result.diff))
    printed = capsys.readouterr().out + json.dumps(from_outcome(outcome).to_dict())  # and --json
    kc_step = next(s for s in outcome.steps if s.id == f"file:{KUBECONFIG}")
    assert kc_step.status == "planned" and kc_step.diff == f"+ {KUBECONFIG} (hostagent): {summary}\n"
    assert printed.count(summary) == 3 and "controller-ips" in printed, printed
    assert SECRET_KEY not in printed and SECRET_TOKEN not in printed

    # a changed secret file: both sides as summaries; the same bytes with other owner/mode: no content
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig.replace(SECRET_TOKEN, "older-token"))
    diff = File(path=str(path), content=kubeconfig, mode=0o640, owner="root", group="root", secret=True).diff()
    assert diff is not None and f"- {path} (now): (secret, " in diff and f"+ {path} (hostagent): {summary}" in diff
    assert "older-token" not in diff and SECRET_TOKEN not in diff and SECRET_KEY not in diff
    path.write_text(kubeconfig)
    same = File(path=str(path), content=kubeconfig, mode=0o600, owner="root", group="root", secret=True).diff()
    assert same == f"owner/mode of {path} → root:root 0600"


def test_backoff_is_the_reflectors() -> None:
    """0.8 s doubling to 30 s, times 1 to 2 (jitter), back to 0.8 s after 2 minutes without a failure."""
    from hostagent.k8ssync.watcher import Backoff

    now = [0.0]
    low = Backoff(clock=lambda: now[0], rand=lambda: 0.0)
    assert [round(low.next(), 1) for _ in range(8)] == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    high = Backoff(clock=lambda: now[0], rand=lambda: 0.999)
    assert [round(high.next()) for _ in range(3)] == [2, 3, 6]
    now[0] = 119.0
    assert round(low.next()) == 30, "failures less than 2 minutes apart keep the step"
    now[0] = 240.0
    assert round(low.next(), 1) == 0.8, "a quiet spell starts small again"
