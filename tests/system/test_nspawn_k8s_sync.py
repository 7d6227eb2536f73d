"""k8s-sync end to end on a Debian 12 host under systemd-nspawn, beside an agent installed by hostagent.

snapshot → agent install → snapshot → `k8s-sync install` (dry run, real, again) → it reports to the
fake deepflow-server → pods created and deleted on the fake apiserver → new versions → apiserver
down → error_msg with the last good version → status, systemd-analyze security → `k8s-sync
uninstall` → snapshot equal to the one with the agent (still running) → agent uninstall → snapshot
equal to the first.

The fakes run in this test's process on 127.0.0.1; the container shares this machine's network
namespace (no --private-network), so loopback is all that is used."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.fixtures.fake_apiserver import FakeApiserver, pod, small_cluster
from tests.fixtures.fake_deepflow_grpc import FakeDeepflowGrpc
from tests.hostsnap import diff as snapshot_diff
from tests.system.conftest import comparable
from tests.system.hostcmd import INSTALL, UNINSTALL, snapshot
from tests.system.test_nspawn_e2e import hostagent, wait_agent

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

UNIT = "hostagent-k8s-sync.service"


@pytest.fixture(scope="module")
def host():
    from tests.images.nspawn import nspawn_host

    with nspawn_host() as h:
        yield h


def names(report: dict) -> list[str]:
    return sorted(report["pods"])


def test_k8s_sync_service_end_to_end(host, tmp_path: Path) -> None:
    api = FakeApiserver(tls_dir=str(tmp_path / "tls")).start()
    small_cluster(api, 3)
    df = FakeDeepflowGrpc().start()
    try:
        _run(host, api, df)
    finally:
        df.stop()
        api.close()


def _run(host, api: FakeApiserver, df: FakeDeepflowGrpc) -> None:
    first = snapshot(host)
    rc, report, err = hostagent(host, INSTALL)
    assert rc == 0, (report, err)
    wait_agent(host)
    with_agent = snapshot(host)

    assert api.tls is not None
    host.put("/root/k8s/ca.crt", Path(api.tls["ca"]).read_bytes(), 0o600)
    host.put("/root/k8s/token", "test-token\n", 0o600)
    # a client certificate and key too (the server's own pair: the fake asks for none, the client loads them)
    host.put("/root/k8s/client.crt", Path(api.tls["cert"]).read_bytes(), 0o600)
    key = Path(api.tls["key"]).read_text()
    host.put("/root/k8s/client.key", key, 0o600)
    host.put("/root/k8s/kubeconfig", f"""apiVersion: v1
kind: Config
current-context: fake
clusters: [{{name: fake, cluster: {{server: "{api.url}", certificate-authority: ca.crt}}}}]
users: [{{name: sa, user: {{tokenFile: token, client-certificate: client.crt, client-key: client.key}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: sa}}}}]
""", 0o600)
    args = (f"hostagent k8s-sync install --controller-ip 127.0.0.1 --controller-port {df.port} --cluster-id d-e2e00001 "
            "--kubeconfig /root/k8s/kubeconfig --interval 5 --yes --json")
    import base64

    secrets = ["test-token", base64.b64encode(key.encode()).decode()[:40], key.splitlines()[1]]

    def no_secret(out: str) -> None:
        assert "(secret, " in out and not [s for s in secrets if s in out], out

    rc, report, err = hostagent(host, args.replace("--yes", "--dry-run"))
    assert rc == 0 and report["dry_run"] and all(s["status"] == "planned" for s in report["steps"]), report
    assert any("controller-port" in (s["diff"] or "") for s in report["steps"])
    no_secret(json.dumps(report))
    dry = host.run(args.replace("--yes --json", "--dry-run --verbose")).check()  # the dry run's text
    no_secret(dry.stdout + dry.stderr)
    # the preview before the question, on a terminal; "n" changes nothing
    preview = host.run(f"printf 'n\\n' | script -qec {shlex.quote(args.replace(' --yes --json', ''))} /dev/null")
    assert "apply these changes?" in preview.stdout and "not confirmed" in preview.stdout, preview
    no_secret(preview.stdout)
    assert snapshot_diff(comparable(with_agent), comparable(snapshot(host))) == [], "a dry run changes nothing"

    rc, report, err = hostagent(host, args)
    assert rc == 0 and report["changed"], (report, err, host.journal(UNIT))
    no_secret(json.dumps(report))
    # the installed copy edited: --verbose shows the applied diff that puts it back
    host.run("echo '# edited' >> /etc/hostagent-k8s-sync/kubeconfig").check()
    verbose = host.run(args.replace("--json", "--verbose")).check()
    assert "- /etc/hostagent-k8s-sync/kubeconfig (now): (secret, " in verbose.stdout, verbose.stdout
    no_secret(verbose.stdout + verbose.stderr)
    with df.cond:  # that restarted the service: its version starts anew, at its start time
        df.reports.clear()
    rc, again, _ = hostagent(host, args)
    assert rc == 0 and not again["changed"], again

    # the service: its own user, no capabilities, a copy of the kubeconfig it can read
    pid = host.run(f"systemctl show -P MainPID {UNIT}").check().stdout.strip()
    status = host.run(f"cat /proc/{pid}/status").check().stdout
    caps = {k: v for k, v in re.findall(r"^(Cap\w+):\s+(\w+)$", status, re.M)}
    assert all(int(v, 16) == 0 for v in caps.values()), caps
    uid = host.run("id -u deepflow-k8s").check().stdout.strip()
    assert re.search(rf"^Uid:\s+{uid}\s", status, re.M)
    assert host.run("stat -c '%U:%G %a' /etc/hostagent-k8s-sync/kubeconfig").check().stdout.strip() == "root:deepflow-k8s 640"
    exposure = host.run(f"systemd-analyze security {UNIT} --no-pager").stdout
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", exposure).group(1))
    print(f"\nsystemd-analyze security {UNIT}: {score}")
    assert score <= 2.0, exposure[-2000:]

    reports = df.wait(lambda rs: len(rs) >= 1, timeout=60)
    assert reports[0]["cluster_id"] == "d-e2e00001" and len(reports[0]["objects"]["*v1.Pod"]) == 3
    version = reports[-1]["version"]
    created = api.add("pods", pod("e2e-new"))
    later = df.wait(lambda rs: any(o["metadata"]["name"] == "e2e-new" for o in rs[-1]["objects"]["*v1.Pod"]), timeout=30)[-1]
    assert later["version"] == version + 1, host.journal(UNIT)[-4000:]
    api.delete("pods", created["metadata"]["uid"])
    gone = df.wait(lambda rs: len(rs[-1]["objects"]["*v1.Pod"]) == 3 and rs[-1]["version"] > later["version"], timeout=30)[-1]
    assert gone["version"] == later["version"] + 1

    api.down()
    down = df.wait(lambda rs: "pods:" in rs[-1].get("error_msg", ""), timeout=30)[-1]
    assert down["version"] == gone["version"] and len(down["objects"]["*v1.Pod"]) == 3
    api.up()
    assert df.violations == []

    rc, st, _ = hostagent(host, "hostagent k8s-sync status --json")
    assert rc == 0 and st["data"]["installed"] and st["data"]["drift"] == [], st
    rc, st, _ = hostagent(host, "hostagent status --json")
    assert rc == 0 and st["data"]["installed"], "the agent's manifest is its own"

    rc, report, err = hostagent(host, "hostagent k8s-sync uninstall --yes --json")
    assert rc == 0 and report["changed"], (report, err)
    assert snapshot_diff(comparable(with_agent), comparable(snapshot(host))) == []
    wait_agent(host)  # the agent is untouched

    rc, report, err = hostagent(host, UNINSTALL)
    assert rc == 0, (report, err)
    host.run("rm -rf /root/k8s").check()
    assert snapshot_diff(comparable(first), comparable(snapshot(host))) == []
