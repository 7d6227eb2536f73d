"""group-config --apply and resolve_agent_group against a local fake server (loopback only)
with the documented envelope, routes and strict template validation."""

from __future__ import annotations

import json
from typing import Iterator

import pytest
import typer
import yaml
from typer.testing import CliRunner

from hostagent import options, server as groupapi
from hostagent.errors import InputError, ServerError
from hostagent.cli.net import register
from hostagent.render import groupconfig
from tests.fixtures.fake_group_server import VERSIONS, FakeGroupServer, ValidationError, validate_yaml


@pytest.fixture
def server() -> Iterator[FakeGroupServer]:
    with FakeGroupServer() as srv:
        yield srv


def cli(*argv: str):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, list(argv))


def config_requests(srv: FakeGroupServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in srv.requests if r.method != "GET"]


def test_resolve_by_name_and_id(server: FakeGroupServer) -> None:
    group = server.add_group("legacy-hosts")
    assert groupapi.resolve_agent_group(server.url, "legacy-hosts", 5) == group["SHORT_UUID"]
    assert groupapi.resolve_agent_group(server.url, group["SHORT_UUID"], 5) == group["SHORT_UUID"]
    # deepflow-ctl's headers go with every request.
    assert all(r.headers.get("X-User-Id") == "1" and r.headers.get("X-Org-Id") == "1" for r in server.requests)
    with pytest.raises(ServerError, match="no agent group 'nope'"):
        groupapi.resolve_agent_group(server.url, "nope", 5)
    with pytest.raises(InputError, match="expected a group name"):
        groupapi.resolve_agent_group(server.url, "bad/name", 5)


def test_resolve_reports_server_failures_verbatim(server: FakeGroupServer) -> None:
    server.set_failure("fail", description="agent group service unavailable: db locked")
    with pytest.raises(ServerError, match="FAIL: agent group service unavailable: db locked"):
        groupapi.resolve_agent_group(server.url, "x", 5)
    server.set_failure("hang", hang_seconds=10)
    with pytest.raises(ServerError, match="timed out after 0.5s"):
        groupapi.resolve_agent_group(server.url, "x", 0.5)
    server.clear_failure()


def test_server_address_forms() -> None:
    assert options.parse_server("10.0.0.5").url == "http://10.0.0.5:30417"
    assert options.parse_server("dfs.example:20417").url == "http://dfs.example:20417"
    assert options.parse_server("https://[fd00::1]:443/").url == "https://[fd00::1]:443"
    with pytest.raises(InputError):
        options.parse_server("ftp://x")


def test_apply_creates_group_then_updates(server: FakeGroupServer) -> None:
    first = cli("group-config", "--apply", "--server", server.url, "--agent-group", "edge-hosts",
                "--create-group", "--lb", "10.9.8.7", "--no-other-netns", "--json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)["data"]
    assert out["applied"]["group_created"] and out["applied"]["method"] == "POST"
    (group,) = [g for g in server.groups.values() if g["NAME"] == "edge-hosts"]
    assert group["NAME"] == "edge-hosts" and out["applied"]["group_id"] == group["SHORT_UUID"]
    stored = yaml.safe_load(server.configs[group["LCUUID"]])
    assert stored == out["config"]
    assert stored["global"]["communication"] == {
        "proxy_controller_ip": "10.9.8.7", "proxy_controller_port": 30035,
        "ingester_ip": "10.9.8.7", "ingester_port": 30033,
    }
    second = cli("group-config", "--apply", "--server", server.url, "--agent-group", group["SHORT_UUID"],
                 "--max-memory", "1024", "--no-other-netns")
    assert second.exit_code == 0, second.output
    assert "updated the config of agent group" in second.stderr
    assert config_requests(server)[-1] == f"PUT /v1/agent-group-configuration/{group['LCUUID']}/yaml"
    assert yaml.safe_load(server.configs[group["LCUUID"]])["global"]["limits"] == {"max_memory": 1024}

    # The same config again: nothing is pushed and the JSON says unchanged (Ansible's changed=0).
    pushes = len(config_requests(server))
    third = cli("group-config", "--apply", "--server", server.url, "--agent-group", group["SHORT_UUID"],
                "--max-memory", "1024", "--no-other-netns", "--json")
    assert third.exit_code == 0 and json.loads(third.stdout)["changed"] is False
    assert [r for r in config_requests(server)[pushes:] if not r.startswith("GET")] == []


def test_refused_by_the_server_changes_nothing(server: FakeGroupServer) -> None:
    # The server's answer to a refused push: FAIL, HTTP 500, a nested message; nothing is kept.
    kept = server.add_group("pods")
    server.configs[kept["LCUUID"]] = "inputs:\n  cbpf:\n    common:\n      capture_mode: 0\n"
    server.set_failure("fail", path=f"/v1/agent-group-configuration/{kept['LCUUID']}/yaml", http_status=500,
                       description="yaml validate failed: invalid value for key 'inputs': unexpected key in "
                       "configuration: x, please check the yaml format")
    result = cli("group-config", "--apply", "--server", server.url, "--agent-group", "pods", "--no-other-netns",
                 "--json")
    assert result.exit_code == 2
    err = json.loads(result.stdout)
    assert err["ok"] is False and "invalid value for key 'inputs': unexpected key" in err["error"]
    assert "HTTP 500" in err["error"]
    assert server.configs[kept["LCUUID"]].endswith("capture_mode: 0\n")  # untouched
    assert list(server.groups) == [server.default_group["LCUUID"], kept["LCUUID"]]


@pytest.mark.parametrize(("version", "inner_from"), [("6.6.9", "first in v6.6.9.2504"),
                                                     ("7.0.2", "first in v6.6.9.2504")])
def test_a_key_the_live_server_lacks_is_refused_before_any_write(version: str, inner_from: str) -> None:
    with FakeGroupServer(version=version) as old:
        result = cli("group-config", "--apply", "--server", old.url, "--agent-group", "pods",
                     "--create-group", "--inner", "--no-other-netns")
        assert result.exit_code == 2, result.output
        line = result.stderr.strip()
        assert line.startswith("hostagent group-config: error: unexpected key in configuration: "
                               "inputs.cbpf.af_packet.inner_interface_capture_enabled (not in the "), line
        assert inner_from in line and "server's template" in line and result.stderr.count("\n") == 1
        assert [r.method for r in old.requests] == ["GET"]  # the template, nothing else
        assert list(old.groups) == [old.default_group["LCUUID"]] and old.configs == {}


@pytest.mark.parametrize("version", VERSIONS)
def test_apply_against_each_server_version(version: str) -> None:
    with FakeGroupServer(version=version) as srv:
        first = cli("group-config", "--apply", "--server", srv.url, "--agent-group", "edge", "--create-group",
                    "--max-memory", "512", "--no-other-netns", "--json")
        assert first.exit_code == 0, first.output
        out = json.loads(first.stdout)["data"]
        group = next(g for g in srv.groups.values() if g["NAME"] == "edge")
        if version == "6.6.5":
            # No template, no nested route: the flat schema on its own route.
            assert out["schema"] == "legacy" and out["applied"]["method"] == "POST"
            ((cfg_lcuuid, stored),) = srv.flat_configs.items()
            assert stored == {"group": group["LCUUID"], "config": {
                "tap_interface_regex": out["config"]["tap_interface_regex"], "tap_mode": out["config"]["tap_mode"],
                "max_memory": 512}}
            assert out["config"]["vtap_group_id"] == group["SHORT_UUID"]
        else:
            assert out["schema"] == "nested" and out["target"] == f"the template of {srv.url}"
            assert out["applied"]["method"] == "POST"
            stored_text = srv.configs[group["LCUUID"]]
            validate_yaml(stored_text, srv.template)
            assert yaml.safe_load(stored_text)["global"]["limits"] == {"max_memory": 512}
        second = cli("group-config", "--apply", "--server", srv.url, "--agent-group", group["SHORT_UUID"],
                     "--max-memory", "1024", "--no-other-netns", "--json")
        assert second.exit_code == 0, second.output
        method = json.loads(second.stdout)["data"]["applied"]["method"]
        assert method == ("PATCH" if version == "6.6.5" else "PUT")
        if version == "6.6.5":
            assert srv.flat_configs[cfg_lcuuid]["config"]["max_memory"] == 1024
        third = cli("group-config", "--apply", "--server", srv.url, "--agent-group", group["SHORT_UUID"],
                    "--max-memory", "1024", "--no-other-netns", "--json")
        assert third.exit_code == 0 and json.loads(third.stdout)["changed"] is False


def test_inner_on_a_v71_server_and_org_header() -> None:
    with FakeGroupServer(version="7.1.0") as srv:
        result = cli("group-config", "--apply", "--server", srv.url, "--agent-group", "pods", "--create-group",
                     "--inner", "--org-id", "3", "--no-other-netns", "--json")
        assert result.exit_code == 0, result.output
        assert {r.headers.get("X-Org-Id") for r in srv.requests} == {"3"}


def test_ranges_are_checked_against_the_servers_own_template(server: FakeGroupServer) -> None:
    result = cli("group-config", "--server", server.url, "--max-millicpus", "200000", "--no-other-netns")
    assert result.exit_code == 2
    assert "global.limits.max_millicpus: 200000 is outside [1, 100000]" in result.stderr
    assert [f"{r.method} {r.path}" for r in server.requests] == ["GET /v1/agent-group-configuration/template/yaml"]


def test_apply_missing_group_without_create(server: FakeGroupServer) -> None:
    result = cli("group-config", "--apply", "--server", server.url, "--agent-group", "absent", "--no-other-netns")
    assert result.exit_code == 2 and "pass --create-group" in result.stderr
    assert config_requests(server) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--apply"], "--apply needs --server and --agent-group"),
        (["--apply", "--server", "x", "--agent-group", "g", "--server-version", "6.5.9", "--schema", "nested"],
         "has no nested schema"),
        (["--server-version", "seven"], "--server-version: server version 'seven' is not of the form"),
        (["--max-memory", "64"], "global.limits.max_memory: 64 is outside [128, 100000]"),
        (["--interface-regex", "^(?!lo).*$"], "negative look-ahead (?!...) is not supported by the agent's Rust regex"),
        (["--server", "http://127.0.0.1:1", "--org-id", "0"], "--org-id 0 is outside [1, 1024]"),
        (["--capture-mode", "2"], "Enterprise-only"),
        (["--lb", "1.2.3.4", "--controller-ip", "1.2.3.5"], "do not combine"),
        (["--controller-ip", "not an ip!"], "malformed --controller-ip"),
        (["--ingester-port", "70000"], "outside [1, 65535]"),
        (["--interface-regex", "("], "not a valid regex"),
        (["--schema", "legacy"], "needs --group-id"),
        (["--ring-blocks", "4", "--inner"], "[8, 1000000]"),
    ],
)
def test_bad_input_exits_2_before_any_request(server: FakeGroupServer, argv: list[str], message: str) -> None:
    result = cli("group-config", *argv, "--no-other-netns")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert server.requests == []


def test_generated_configs_pass_the_fake_servers_validation() -> None:
    from hostagent.net.model import Layout, Recommendation, RegexCheck

    rec = Recommendation(r"^(eth.*|lo)$", 1, RegexCheck("", (), (), ()), (),
                         {"inner_interface_regex": r"^eth\d+$", "ring_blocks": 256})
    layout = Layout(None, "macvlan", ("macvlan",), (), (), (), (), (), 0, (), (), rec)
    opts = groupconfig.GroupConfigOptions(inner=True, ring_blocks=256, controller_ip="10.0.0.1",
                                          ingester_ip="10.0.0.1", max_millicpus=500, max_memory=512)
    text = groupconfig.to_yaml(groupconfig.build(layout, opts), "header comment")
    validate_yaml(text)  # raises on any key the template lacks
    legacy = groupconfig.to_yaml(groupconfig.build(layout, groupconfig.GroupConfigOptions(
        schema="legacy", group_id="g-0123456789")))
    with pytest.raises(ValidationError, match="unexpected key in configuration: vtap_group_id"):
        validate_yaml(legacy)


def test_inner_with_a_profile_lacking_cap_sys_admin_is_refused(tmp_path) -> None:
    """The host's installed profile comes from the manifest's caps step (read-only: HOSTAGENT_STATE_DIR)."""
    import os
    import subprocess
    import sys

    from hostagent import caps
    from hostagent.manifest import Manifest
    from hostagent.steps.files import FileCaps

    def group_config_inner(profile: str) -> subprocess.CompletedProcess:
        manifest = Manifest.new({"caps": profile}, {})
        manifest.path = str(tmp_path / "manifest.json")
        manifest.put(FileCaps(path="/usr/sbin/deepflow-agent", caps=list(caps.resolve(profile))), {})
        manifest.save()
        return subprocess.run([sys.executable, "-m", "hostagent", "group-config", "--inner", "--no-other-netns"],
                              env=dict(os.environ, HOSTAGENT_STATE_DIR=str(tmp_path)), capture_output=True, text=True)

    refused = group_config_inner("cbpf-minimal")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--inner needs CAP_SYS_ADMIN (setns into pod namespaces), which this host's agent lacks (installed with " \
           "cap_net_admin,cap_net_raw,cap_ipc_lock,cap_sys_ptrace); re-install with --caps deepflow-doc" in refused.stderr
    allowed = group_config_inner("deepflow-doc")
    assert allowed.returncode == 0, allowed.stderr
    assert "inner_interface_capture_enabled: true" in allowed.stdout
