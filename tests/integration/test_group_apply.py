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
from tests.fixtures.fake_group_server import TEMPLATE, FakeGroupServer, ValidationError, validate_yaml


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
    (group,) = server.groups.values()
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


def test_refused_config_changes_nothing(server: FakeGroupServer) -> None:
    # A server whose template lacks the inner-netns keys, like one from before they existed.
    old_template = TEMPLATE.replace("      inner_interface_capture_enabled: false\n", "")
    with FakeGroupServer(template=old_template) as old:
        result = cli("group-config", "--apply", "--server", old.url, "--agent-group", "pods",
                     "--create-group", "--inner", "--no-other-netns")
        assert result.exit_code == 2
        assert result.stderr.strip() == (
            "hostagent group-config: error: deepflow-server refused: FAIL: yaml validate failed: unexpected key in "
            "configuration: inner_interface_capture_enabled, please check the yaml format (HTTP 400, POST "
            f"/v1/agent-group-configuration/{old.requests[-2].path.split('/')[3]}/yaml)"
        )
        assert result.stdout == ""
        # The group made for this push was deleted again.
        assert old.groups == {} and old.configs == {}
        assert config_requests(old)[-1].startswith("DELETE /v1/vtap-groups/")

        kept = old.add_group("pods")
        old.configs[kept["LCUUID"]] = "inputs:\n  cbpf:\n    common:\n      capture_mode: 0\n"
        again = cli("group-config", "--apply", "--server", old.url, "--agent-group", "pods", "--inner",
                    "--no-other-netns", "--json")
        assert again.exit_code == 2
        err = json.loads(again.stdout)
        assert err["ok"] is False and "unexpected key in configuration" in err["error"]
        assert old.configs[kept["LCUUID"]].endswith("capture_mode: 0\n")  # untouched
        assert list(old.groups) == [kept["LCUUID"]]


def test_apply_missing_group_without_create(server: FakeGroupServer) -> None:
    result = cli("group-config", "--apply", "--server", server.url, "--agent-group", "absent", "--no-other-netns")
    assert result.exit_code == 2 and "pass --create-group" in result.stderr
    assert config_requests(server) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--apply"], "--apply needs --server and --agent-group"),
        (["--apply", "--server", "x", "--agent-group", "g", "--schema", "legacy", "--group-id", "g-0123456789"],
         "takes only --schema nested"),
        (["--capture-mode", "2"], "Enterprise-only"),
        (["--lb", "1.2.3.4", "--controller-ip", "1.2.3.5"], "do not combine"),
        (["--controller-ip", "not an ip!"], "malformed --controller-ip"),
        (["--ingester-port", "70000"], "outside 1-65535"),
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
