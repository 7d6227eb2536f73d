"""The CLI as users call it: exit codes, one-line errors, JSON shape, nothing written on refusal."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hostagent import paths


def hostagent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostagent", *args], capture_output=True, text=True, cwd="/")


@pytest.mark.parametrize("args, message", [
    (["--controller-ip", "10.0.0.1", "--controller-ip", "fd00::2"], "mix IPv4 and IPv6"),
    (["--controller-ip", "300.1.1.1"], "malformed controller IP"),
    (["--controller-ip", "10.0.0.1", "--caps", "cap_net_raw,cap_frobnicate"], "unknown capability"),
    (["--controller-ip", "10.0.0.1", "--cluster-id", "bad id"], "invalid cluster id"),
    (["--controller-ip", "10.0.0.1", "--agent-group", "g-short"], "invalid agent group"),
    (["--controller-ip", "10.0.0.1", "--cluster-id", "abc\nkey: value"], "single line"),
    ([], "at least one --controller-ip"),
])
def test_bad_input_exits_2_with_one_line(args, message) -> None:
    proc = hostagent("install", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not os.path.exists(paths.MANIFEST)


def test_json_error_object() -> None:
    proc = hostagent("install", "--controller-ip", "10.0.0.1", "--caps", "cap_nope", "--json")
    obj = json.loads(proc.stdout)
    assert proc.returncode == 2 and obj["ok"] is False and obj["changed"] is False
    assert "unknown capability 'cap_nope'" in obj["error"] and obj["exit_code"] == 2


def test_unknown_key_in_config_file(tmp_path) -> None:
    f = tmp_path / "opts.yaml"
    f.write_text("controller-ips: [10.0.0.1]\nmemory: 512\n")
    proc = hostagent("install", "--config-file", str(f))
    assert proc.returncode == 2 and "unknown key 'memory'" in proc.stderr


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="this host runs systemd")
def test_refuses_a_host_without_systemd() -> None:
    proc = hostagent("install", "--controller-ip", "10.0.0.1", "--dry-run")
    assert proc.returncode == 2 and "systemd is not PID 1" in proc.stderr


@pytest.mark.skipif(os.path.exists(paths.MANIFEST), reason="hostagent is installed here")
def test_uninstall_and_status_without_manifest() -> None:
    proc = hostagent("uninstall", "--yes", "--json")
    obj = json.loads(proc.stdout)
    assert proc.returncode == 0 and obj["changed"] is False and "nothing to uninstall" in obj["notes"][0]
    proc = hostagent("status", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"installed": False, "drift": [], "steps": []}
