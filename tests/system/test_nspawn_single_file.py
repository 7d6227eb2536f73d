"""The single file's whole lifecycle on a Debian 12 host with NO Python at all (systemd-nspawn).

The image is the nspawn tier's without the python3 and python3-venv packages (nothing pulls them
back in: checked). The file (dist/hostagent-<v>-linux-x86_64, built once per session) is put at
/usr/sbin/hostagent, root:root 0755, as the .deb does. Then: install → host suite → install again
(nothing changes) → reboot → suite → the agent binary replaced as a self-upgrade does (caps gone) +
restart → caps back → uninstall → suite --state=absent → snapshot equal.

The snapshots are taken from this machine through the container's /proc/<pid 1>/root
(tests/hostsnap.py with a root path): the host has no python3 to run hostsnap itself.

The SysV init and OpenRC hosts without Python run the file too (their lifecycle is hostagent's
lifecycle tests' to check).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostsnap import diff as snapshot_diff
from tests.system.test_nspawn_e2e import lifecycle

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]


@pytest.fixture(scope="module")
def host(request, single_file):
    """A host of the init the test is parametrized with (indirect)."""
    from tests.images.nspawn import nspawn_host

    with nspawn_host(request.param, wheelhouse=False, single_file=single_file, python=False, ssh=True, hostsnap=False) as h:
        yield h


@pytest.mark.parametrize("host", ["sysvinit", "openrc", "systemd"], indirect=True)
def test_the_host_has_no_python(host):
    r = host.run("command -v python3 python3.11 python; ls /usr/bin/python* /usr/lib/python3*; "
                 "dpkg -l 'python3*' 2>/dev/null | grep ^ii")
    assert r.stdout.strip() == "", r.stdout
    assert host.run("hostagent --version").check().stdout.startswith("hostagent ")


@pytest.mark.parametrize("host", ["systemd"], indirect=True)
def test_single_file_lifecycle_without_python(host, tmp_path):
    assert host.run("hostagent --version").check().stdout.startswith("hostagent ")

    def unit_calls_the_file() -> None:
        unit = host.get("/etc/systemd/system/deepflow-agent.service")
        assert "ExecStart=/usr/sbin/hostagent exec --prepared " in unit, unit

    timings = lifecycle(host, tmp_path, host.snapshot, suite_has_python=False, after_install=unit_calls_the_file)
    print(f"\nsingle-file e2e timings: {timings}")


@pytest.mark.parametrize("host", ["systemd"], indirect=True)
def test_k8s_sync_service_from_the_file(host, tmp_path):
    """`k8s-sync install` from the file on the host without Python: its unit calls the file, the service
    (its own user, no capabilities; it runs the copy in root's cache, as PrivateUsers= maps root to root)
    reports to the fake deepflow-server; uninstall leaves the host as it was."""
    import json

    from tests.integration.k8s_sync_helpers import fakes
    from tests.system.conftest import comparable
    from tests.system.test_nspawn_e2e import hostagent

    unit = "hostagent-k8s-sync.service"
    with fakes(tmp_path, pods=2) as (api, df):
        before = comparable(host.snapshot())
        assert api.tls
        host.put("/root/k8s/ca.crt", Path(api.tls["ca"]).read_bytes(), 0o600)
        host.put("/root/k8s/kubeconfig", f"""apiVersion: v1
kind: Config
current-context: fake
clusters: [{{name: fake, cluster: {{server: "{api.url}", certificate-authority: ca.crt}}}}]
users: [{{name: sa, user: {{token: test-token}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: sa}}}}]
""", 0o600)
        # An exec credential plugin is the host's program: it must not get the bundle's LD_LIBRARY_PATH
        # (its glibc and libssl). This one hands out the token only with the host's environment.
        host.put("/root/k8s/plugin", """#!/bin/sh
[ -z "$LD_LIBRARY_PATH" ] && t=test-token || t=leaked
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' $t
""", 0o755)
        host.put("/root/k8s/kubeconfig-exec", host.get("/root/k8s/kubeconfig").replace(
            "{token: test-token}", "{exec: {apiVersion: client.authentication.k8s.io/v1, command: /root/k8s/plugin, "
                                   "interactiveMode: Never}}"), 0o600)
        rc, report, err = hostagent(host, f"hostagent k8s-sync run --once --json --controller-ip 127.0.0.1 --controller-port "
                                          f"{df.port} --cluster-id d-file0001 --kubeconfig /root/k8s/kubeconfig-exec")
        assert rc == 0 and report["data"]["report"]["entries"] == 10, (report, err)
        rc, report, err = hostagent(host, f"hostagent k8s-sync install --controller-ip 127.0.0.1 --controller-port {df.port} "
                                          "--cluster-id d-file0001 --kubeconfig /root/k8s/kubeconfig --yes --json")
        assert rc == 0 and report["changed"], (report, err, host.journal(unit))
        assert "ExecStart=/usr/sbin/hostagent k8s-sync run --config-file " in host.get(f"/etc/systemd/system/{unit}")
        reports = df.wait(lambda rs: len(rs) >= 2, timeout=60)
        assert reports[1]["cluster_id"] == "d-file0001" and len(reports[1]["objects"]["*v1.Pod"]) == 2, host.journal(unit)
        assert df.violations == []
        rc, st, _ = hostagent(host, "hostagent k8s-sync status --json")
        assert rc == 0 and st["data"]["installed"] and st["data"]["drift"] == [], json.dumps(st)
        rc, report, err = hostagent(host, "hostagent k8s-sync uninstall --yes --json")
        assert rc == 0 and report["changed"], (report, err)
        host.run("rm -rf /root/k8s").check()
        assert snapshot_diff(before, comparable(host.snapshot())) == []
