"""A server's own template (GET /v1/agent-group-configuration/template/yaml) read as a key table."""

from __future__ import annotations

import pytest

from hostagent.deepflow import keys
from hostagent.deepflow.keys import check, table_for
from hostagent.deepflow.template import parse_template, render_template

# The server's format (server/agent_config/template.yaml): a YAML comment block before every key, a "# ---"
# part documenting the fields of a dict value, TODO lines, bilingual descriptions as block scalars.
TEMPLATE = """\
# type: section
# name:
#   en: Global
#   ch: 全局配置
# description:
global:
  # type: section
  # name: Limits
  # description:
  #   en: Resource limitations
  limits:
    # type: int
    # name:
    #   en: CPU Limit
    # unit: Logical Milli Cores
    # range: [1, 100000]
    # enum_options: []
    # modification: hot_update
    # ee_feature: false
    # description:
    #   en: |-
    #     deepflow-agent uses cgroups to limit CPU usage.
    #
    #     1 millicpu = 1 millicore = 0.001 core.
    # upgrade_from: max_millicpus
    max_millicpus: 1000
    # type: duration
    # unit:
    # range: [10d, 10000d]
    # enum_options: []
    # TODO: check the unit
    local_log_retention: 300d
inputs:
  cbpf:
    common:
      # type: int
      # range: []
      # enum_options:
      #   - 0:
      #       en: Local
      #   - 1:
      #       en: Virtual Mirror
      # upgrade_from: tap_mode
      capture_mode: 0
  proc:
    # type: dict
    # range: []
    # enum_options: []
    # description:
    #   en: matchers
    # ---
    # type: string
    # enum_options: [process_name, cmdline]
    # ---
    # match_type: process_name
    # ---
    process_matcher:
    - match_regex: deepflow-.*
      match_type: cmdline
    # type: string
    # enum_options: [free, available]
    metric: free
    # type: string
    process_blacklist:
    - sleep
    - sh
    untyped_flag: true
"""


def test_parse_the_server_format() -> None:
    table = parse_template(TEMPLATE, "test")
    assert set(table.keys) == {"global.limits.max_millicpus", "global.limits.local_log_retention",
                               "inputs.cbpf.common.capture_mode", "inputs.proc.process_matcher", "inputs.proc.metric",
                               "inputs.proc.process_blacklist", "inputs.proc.untyped_flag"}
    cpu = table.keys["global.limits.max_millicpus"]
    assert (cpu.type, cpu.default, cpu.range, cpu.upgrade_from, cpu.unit) == (
        "int", 1000, ("1", "100000"), "max_millicpus", "Logical Milli Cores")
    assert table.keys["global.limits.local_log_retention"].range == ("10d", "10000d")
    assert table.keys["inputs.cbpf.common.capture_mode"].enum == ("0", "1")
    matcher = table.keys["inputs.proc.process_matcher"]
    assert matcher.type == "dict" and matcher.enum is None  # the "# ---" field docs are not the key's own
    assert table.keys["inputs.proc.metric"].enum == ("free", "available")
    assert table.keys["inputs.proc.process_blacklist"].default == ["sleep", "sh"]
    assert table.keys["inputs.proc.untyped_flag"].type == "bool"  # no comment: typed from its value


def test_check_against_a_parsed_template() -> None:
    table = parse_template(TEMPLATE)
    config = {"global": {"limits": {"max_millicpus": 200000}},
              "inputs": {"cbpf": {"common": {"capture_mode": 2, "extra": 1}}, "proc": {"metric": "used"}}}
    assert [(p.kind, p.path) for p in check(config, table)] == [
        ("range", "global.limits.max_millicpus"), ("enum", "inputs.cbpf.common.capture_mode"),
        ("unknown", "inputs.cbpf.common.extra"), ("enum", "inputs.proc.metric")]


@pytest.mark.parametrize("version", [*keys.SERVER_VERSIONS[1:], "main"])
def test_render_then_parse_is_the_table(version: str) -> None:
    table = table_for(version)
    again = parse_template(render_template(table), table.ref)
    opaque = [p for p, s in table.keys.items() if s.type == "dict"]
    expected = {p: s for p, s in table.keys.items() if not any(p.startswith(d + ".") for d in opaque)}
    assert dict(again.keys) == expected


def test_not_a_template() -> None:
    with pytest.raises(ValueError, match="not an agent-group template"):
        parse_template("- a\n- b\n")
    with pytest.raises(ValueError, match="not an agent-group template"):
        parse_template("a: [\n")
