"""The CLI as users call it: exit codes, one-line errors, JSON shape, nothing written on refusal."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import pytest

from hostagent.host import paths


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
def test_refuses_a_host_without_a_supported_init(root) -> None:
    proc = hostagent("install", "--controller-ip", "10.0.0.1", "--dry-run")
    assert proc.returncode == 2 and "no supported init on this host" in proc.stderr


@pytest.mark.skipif(os.path.exists(paths.MANIFEST), reason="hostagent is installed here")
def test_uninstall_and_status_without_manifest(root) -> None:
    proc = hostagent("uninstall", "--yes", "--json")
    obj = json.loads(proc.stdout)
    assert proc.returncode == 0 and obj["changed"] is False and "nothing to uninstall" in obj["notes"][0]
    proc = hostagent("status", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["data"] == {"installed": False, "drift": [], "notes": [],
                                                                   "steps": []}


ENVELOPE = {"command", "ok", "changed", "dry_run", "steps", "notes", "error", "exit_code", "data"}


@pytest.mark.skipif(os.path.exists(paths.MANIFEST), reason="hostagent is installed here")
@pytest.mark.parametrize("args, code", [
    (["status"], 0),
    (["uninstall", "--dry-run"], 0),
    (["install", "--controller-ip", "10.0.0.1", "--caps", "cap_nope"], 2),
    (["install", "--controller-ip", "10.0.0.1", "--server", "host:abc", "--watcher-domain", "w"], 2),
    (["detect", "--netns", "no-such-netns"], 2),
    (["group-config", "--schema", "flat"], 2),
    (["group-config", "--capture-mode", "2"], 2),
    (["install", "--no-such-flag"], 2),
    (["doctor", "--timeout", "0.1"], 1),
])
def test_every_command_prints_the_same_envelope(args, code) -> None:
    proc = hostagent(*args, "--json")
    obj = json.loads(proc.stdout)
    assert set(obj) == ENVELOPE, obj
    assert (proc.returncode, obj["exit_code"], obj["ok"]) == (code, code, code == 0), (proc.stdout, proc.stderr)
    assert obj["command"] == args[0]
    assert bool(obj["error"]) == bool(code)
    if code == 2:  # refusals, not findings (doctor, status), are one line on stderr
        assert proc.stderr.startswith(f"hostagent {args[0]}: error: ") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["install", "uninstall", "status", "doctor", "detect", "group-config", "completion"])
def test_short_help_works_everywhere(command) -> None:
    proc = hostagent(command, "-h")
    assert proc.returncode == 0 and "Usage:" in proc.stdout


def test_help_lists_the_choices() -> None:
    out = hostagent("group-config", "-h").stdout
    assert "nested" in out and "legacy" in out
    assert "deepflow-doc" in hostagent("install", "-h").stdout


def test_version_and_completion() -> None:
    from hostagent import __version__

    assert hostagent("--version").stdout == f"hostagent {__version__}\n"
    for shell in ("bash", "zsh"):
        proc = hostagent("completion", shell)
        assert proc.returncode == 0 and "_HOSTAGENT_COMPLETE" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "hostagent"], env={**os.environ, "_HOSTAGENT_COMPLETE": "bash_complete",
                          "COMP_WORDS": "hostagent inst", "COMP_CWORD": "1"}, capture_output=True, text=True)
    assert "install" in proc.stdout


def test_quiet_prints_nothing_on_success() -> None:
    proc = hostagent("status", "--quiet")
    assert proc.returncode in (0, 1) and proc.stdout == ""



@pytest.mark.parametrize("args, message", [
    (["install", "--controller-ip", "10.0.0.1", "--controller-port", "٣٠٠٣٥"], "must be an integer"),
    (["install", "--controller-ip", "fe80::1%eth0 x"], "single line|scope id|malformed"),
    (["install", "--controller-ip", "fe80::1%$(reboot)"], "scope id must be an interface name"),
    (["install", "--controller-ip", " 10.0.0.1"], "surrounding whitespace"),
    (["install", "--controller-ip", "10.0.0.1", "--server", "http://x/path", "--watcher-domain", "w"], "malformed --server"),
    (["group-config", "--apply", "--server", "bad host!", "--agent-group", "g", "--no-other-netns"], "malformed --server"),
    (["group-config", "--lb", "notanip", "--no-other-netns"], "malformed --lb|malformed --controller-ip"),
])
def test_more_bad_input_is_refused_on_one_line(args, message) -> None:
    proc = hostagent(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and re.search(message, proc.stderr), proc.stderr


@pytest.mark.parametrize("content, message", [
    (b"controller-ips: [10.0.0.1]\ndomain-timeout: abc\n", "domain-timeout must be a number"),
    (b"controller-ips: [10.0.0.1]\ncaps: [cap_net_raw, cap_net_admin]\n", "--caps must be a string"),
    (b"controller-ips: [10.0.0.1]\nuser: \xff\xfe\n", "not UTF-8 text"),
])
def test_bad_config_files_are_refused_on_one_line(tmp_path, content, message) -> None:
    f = tmp_path / "opts.yaml"
    f.write_bytes(content)
    proc = hostagent("install", "--config-file", str(f))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
