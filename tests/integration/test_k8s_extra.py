"""pip: k8s-sync's libraries come with the `k8s` extra only. A real venv with the core install from the
wheelhouse (the README's offline way; the dependency wheels are cached) holds neither kubernetes nor
grpcio, runs the agent's commands, and refuses k8s-sync with one line naming the extra (exit 2)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.images.wheelhouse import build_wheelhouse

pytestmark = [pytest.mark.slow]


def test_core_install_has_no_k8s_and_names_the_extra(tmp_path: Path) -> None:
    wheelhouse = build_wheelhouse(tmp_path / "wheelhouse")
    assert list(wheelhouse.glob("kubernetes-*.whl")) and list(wheelhouse.glob("grpcio-*.whl")), "the extra installs offline"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index", "--find-links",
                    str(wheelhouse), "hostagent"], check=True)
    found = subprocess.run([python, "-c", "import importlib.util as u; print([m for m in ('kubernetes', 'grpc') "
                                          "if u.find_spec(m)])"], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout
    hostagent = str(venv / "bin" / "hostagent")
    assert subprocess.run([hostagent, "--version"], capture_output=True, text=True, check=False).returncode == 0
    for command in (["run", "--once", "--controller-ip", "127.0.0.1", "--cluster-id", "d-abc123", "--kubeconfig", "/nonexistent"],
                    ["install", "--dry-run", "--controller-ip", "127.0.0.1", "--kubeconfig", "/nonexistent"]):
        r = subprocess.run([hostagent, "k8s-sync", *command], capture_output=True, text=True, check=False)
        lines = r.stderr.splitlines()
        assert (r.returncode, r.stdout, len(lines)) == (2, "", 1), r
        assert lines[0] == (f"hostagent k8s-sync {command[0]}: error: k8s-sync needs the Python packages kubernetes, grpc, "
                            "which this install lacks: pip install 'hostagent[k8s]' (or use the single file, .deb or .rpm, "
                            "which carry them)"), r.stderr
