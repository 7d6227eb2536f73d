"""k8s-sync from the single file: its frozen kubernetes config loader and grpcio (the cython module, its
roots.pem) report to the fake deepflow-server, from a chroot holding nothing but the file, a kubeconfig,
the fake apiserver's CA and /dev/urandom (grpc's abseil seeds from it and aborts without it; every host
and container has it). Loopback only (the chroot shares this machine's network)."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.integration.k8s_sync_helpers import fakes, write_kubeconfig
from tests.packaging.conftest import run

pytestmark = [pytest.mark.root]


def test_run_once_reports(bare: Path, tmp_path: Path) -> None:
    with fakes(tmp_path) as (api, df):
        assert api.tls
        (bare / "dev").mkdir()
        os.mknod(bare / "dev" / "urandom", stat.S_IFCHR | 0o666, os.makedev(1, 9))
        shutil.copy(api.tls["ca"], bare / "ca.crt")
        api.tls["ca"] = "/ca.crt"  # as the chroot sees it
        write_kubeconfig(bare / "kubeconfig", api)
        r = run(bare, "k8s-sync", "run", "--once", "--json", "--controller-ip", "127.0.0.1", "--controller-port",
                str(df.port), "--cluster-id", "d-abc123", "--kubeconfig", "/kubeconfig")
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)["data"]["report"]
        assert report["entries"] == 11 and report["service"] == "agent.Synchronizer", report
        assert len(df.reports) == 1 and df.violations == []
        assert len(df.reports[0]["objects"]["*v1.Pod"]) == 3


def test_status_and_a_bad_kubeconfig(bare: Path) -> None:
    r = run(bare, "k8s-sync", "status")
    assert r.returncode == 0 and "not installed" in r.stdout, r
    (bare / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    r = run(bare, "k8s-sync", "run", "--once", "--controller-ip", "127.0.0.1", "--cluster-id", "d-abc123",
            "--kubeconfig", "/kubeconfig")
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1, r
    assert lines[0].startswith("hostagent k8s-sync run: error: cannot load Kubernetes credentials"), r.stderr
