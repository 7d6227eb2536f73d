"""Group config building: schemas, template keys, YAML from data, and the light CLI import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from hostagent.render import groupconfig
from hostagent.errors import InputError
from hostagent.net.model import Layout, Recommendation, RegexCheck


def layout(regex: str = r"^(eth.*|en[osipx].*|cali.*|lo)$", mode: int = 0, verdict: str = "calico") -> Layout:
    rec = Recommendation(regex, mode, RegexCheck(regex, (), (), ()), ())
    return Layout(None, verdict, (verdict,), (), (), ("eth0",), ("eth0",), (), 0, (), (), rec)


def test_nested_minimal_has_only_capture_keys() -> None:
    config = groupconfig.build(layout(), groupconfig.GroupConfigOptions())
    assert config == {"inputs": {"cbpf": {"common": {"capture_mode": 0},
                                          "af_packet": {"interface_regex": r"^(eth.*|en[osipx].*|cali.*|lo)$"}}}}


def test_nested_full() -> None:
    opts = groupconfig.GroupConfigOptions(inner=True, ring_blocks=64, controller_ip="fd00::5", ingester_ip="10.0.0.9",
                                          ingester_port=31033, max_millicpus=500, max_memory=1024)
    config = groupconfig.build(layout(mode=1, verdict="macvlan"), opts)
    assert config["global"] == {
        "communication": {"proxy_controller_ip": "fd00::5", "proxy_controller_port": 30035,
                          "ingester_ip": "10.0.0.9", "ingester_port": 31033},
        "limits": {"max_millicpus": 500, "max_memory": 1024},
    }
    af = config["inputs"]["cbpf"]["af_packet"]
    assert config["inputs"]["cbpf"]["common"] == {"capture_mode": 1}
    assert af["inner_interface_capture_enabled"] is True and af["inner_interface_regex"] == r"^eth\d+$"
    assert af["tunning"] == {"ring_blocks_enabled": True, "ring_blocks": 64}


def test_legacy_schema_names() -> None:
    opts = groupconfig.GroupConfigOptions(schema="legacy", group_id="g-AbCdE12345", controller_ip="10.1.1.1",
                                          ingester_ip="10.1.1.1", max_memory=512)
    config = groupconfig.build(layout(mode=1), opts)
    assert config == {
        "vtap_group_id": "g-AbCdE12345", "tap_interface_regex": r"^(eth.*|en[osipx].*|cali.*|lo)$", "tap_mode": 1,
        "proxy_controller_ip": "10.1.1.1", "proxy_controller_port": 30035,
        "analyzer_ip": "10.1.1.1", "analyzer_port": 30033, "max_memory": 512,
    }


def test_overrides_win_over_the_recommendation() -> None:
    opts = groupconfig.GroupConfigOptions(interface_regex=r"^bond\d+$", capture_mode=0)
    config = groupconfig.build(layout(mode=1), opts)
    assert config["inputs"]["cbpf"] == {"common": {"capture_mode": 0}, "af_packet": {"interface_regex": r"^bond\d+$"}}


def test_yaml_round_trips_regex_and_header() -> None:
    config = groupconfig.build(layout(regex=r"^(eth\d+|[0-9a-f]+_h|lo)$"), groupconfig.GroupConfigOptions())
    text = groupconfig.to_yaml(config, "hostagent group-config: layout calico")
    assert text.startswith("# hostagent group-config: layout calico\n")
    assert yaml.safe_load(text) == config


def test_template_check_rejects_unknown_keys_and_wrong_types() -> None:
    table = groupconfig.table_for(groupconfig.GroupConfigOptions())
    with pytest.raises(InputError, match="unexpected key in configuration: inputs.cbpf.common.tap_mode"):
        groupconfig.check({"inputs": {"cbpf": {"common": {"tap_mode": 1}}}}, table)
    with pytest.raises(InputError, match="scalar type mismatch: expected int, got str"):
        groupconfig.check({"inputs": {"cbpf": {"common": {"capture_mode": "1"}}}}, table)
    # bool is not int here, as YAML's !!bool is not !!int on the server
    with pytest.raises(InputError, match="expected int, got bool"):
        groupconfig.check({"global": {"limits": {"max_memory": True}}}, table)


@pytest.mark.parametrize(("opts", "message"), [
    (dict(max_memory=64), r"global.limits.max_memory: 64 is outside \[128, 100000\]"),
    (dict(max_millicpus=200000), r"global.limits.max_millicpus: 200000 is outside \[1, 100000\]"),
    (dict(max_millicpus=0), r"outside \[1, 100000\]"),
    (dict(server_version="6.5.9", group_id="g-AbCdE12345", max_millicpus=2000000), r"max_millicpus: 2000000 is outside \[1, 1000000\]"),
])
def test_ranges_of_every_emitted_key_are_enforced(opts: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        groupconfig.build(layout(), groupconfig.GroupConfigOptions(**opts))


@pytest.mark.parametrize(("version", "ok"), [("6.6.9", False), ("7.0.2", False), ("6.6.9.2504", True),
                                              ("7.0.3", True), ("7.1", True)])
def test_inner_keys_need_a_server_that_has_them(version: str, ok: bool) -> None:
    opts = groupconfig.GroupConfigOptions(server_version=version, inner=True)
    if ok:
        assert groupconfig.build(layout(), opts)["inputs"]["cbpf"]["af_packet"]["inner_interface_capture_enabled"]
    else:
        with pytest.raises(InputError, match=r"unexpected key in configuration: inputs.cbpf.af_packet.inner_interface_capture_enabled "
                           r"\(not in the v[0-9.]+ template; first in v6.6.9.2504"):
            groupconfig.build(layout(), opts)


def test_server_version_picks_the_schema() -> None:
    assert groupconfig.GroupConfigOptions(server_version="6.6.5").resolved_schema == "legacy"
    assert groupconfig.GroupConfigOptions(server_version="6.6.9").resolved_schema == "nested"
    with pytest.raises(InputError, match="no nested schema"):
        groupconfig.validate(groupconfig.GroupConfigOptions(server_version="6.5.9", schema="nested"))
    with pytest.raises(InputError, match="--server-version: server version 'x7' is not of the form"):
        groupconfig.validate(groupconfig.GroupConfigOptions(server_version="x7"))
    with pytest.raises(InputError, match="needs --group-id"):
        groupconfig.validate(groupconfig.GroupConfigOptions(server_version="6.6.5"))


@pytest.mark.parametrize(("regex", "construct"), [(r"^(?!lo)eth.*$", "look-ahead"), (r"^(eth)\1$", "backreference"),
                                                  (r"^(?<=x)eth$", "look-behind")])
def test_interface_regex_in_the_agents_dialect(regex: str, construct: str) -> None:
    with pytest.raises(InputError, match=f"--interface-regex: .*{construct}"):
        groupconfig.validate(groupconfig.GroupConfigOptions(interface_regex=regex))
    # A detected recommendation is checked too (the agent would reject the whole config).
    with pytest.raises(InputError, match=f"interface_regex: .*{construct}"):
        groupconfig.build(layout(regex=regex), groupconfig.GroupConfigOptions())


def test_yaml_is_typed_as_meant_by_a_yaml12_reader() -> None:
    from ruamel.yaml import YAML

    config = groupconfig.build(layout(regex="1e3"), groupconfig.GroupConfigOptions(
        controller_ip="10.0.0.1", max_memory=1024, inner=True))
    text = groupconfig.to_yaml(config)
    assert "'1e3'" in text
    read = YAML(typ="safe", pure=True)
    read.version = (1, 2)
    back = read.load(text)
    assert back == config
    table = groupconfig.table_for(groupconfig.GroupConfigOptions())

    def leaves(node: dict, prefix: str = ""):
        for k, v in node.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]

    for path, value in leaves(back):
        spec = table.keys[path]
        assert type(value) is type(spec.default) or {type(value), type(spec.default)} <= {int, float}, path


def test_group_id_format() -> None:
    with pytest.raises(InputError, match="g- followed by 10"):
        groupconfig.validate(groupconfig.GroupConfigOptions(schema="legacy", group_id="g-short"))
    with pytest.raises(InputError, match="g- followed by 10"):
        groupconfig.validate(groupconfig.GroupConfigOptions(server_version="6.5.9", group_id="g-short"))


def test_render_human_includes_the_group_config() -> None:
    from hostagent.cli.agent import detection_report

    text = detection_report(layout())
    assert "layout: calico" in text and "recommended agent-group config (v6.6.9+ schema):" in text
    assert "interface_regex: ^(eth.*|en[osipx].*|cali.*|lo)$" in text


def test_cli_net_imports_only_typer() -> None:
    code = (
        "import sys; import hostagent.cli.net; "
        "heavy = [m for m in ('pyroute2', 'yaml', 'hostagent.net.detect', 'hostagent.server') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_install_detect_refuses_a_recommendation_the_agent_could_not_compile() -> None:
    from hostagent.cli.agent import detection_report

    with pytest.raises(InputError, match=r"interface_regex: .*look-behind"):
        detection_report(layout(regex=r"^(?<=x)eth0$"))
