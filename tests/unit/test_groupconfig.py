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
    with pytest.raises(InputError, match="unexpected key in configuration: inputs.cbpf.common.tap_mode"):
        groupconfig.check_against_template({"inputs": {"cbpf": {"common": {"tap_mode": 1}}}},
                                           groupconfig.NESTED_TEMPLATE)
    with pytest.raises(InputError, match="expected int, got str"):
        groupconfig.check_against_template({"inputs": {"cbpf": {"common": {"capture_mode": "1"}}}},
                                           groupconfig.NESTED_TEMPLATE)
    # bool is not int here, as YAML's !!bool is not !!int on the server
    with pytest.raises(InputError, match="expected int, got bool"):
        groupconfig.check_against_template({"global": {"limits": {"max_memory": True}}},
                                           groupconfig.NESTED_TEMPLATE)


def test_group_id_format() -> None:
    with pytest.raises(InputError, match="g- followed by 10"):
        groupconfig.validate(groupconfig.GroupConfigOptions(schema="legacy", group_id="g-short"))


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
