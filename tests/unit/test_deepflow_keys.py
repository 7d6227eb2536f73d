"""Template key tables per server version, and the check of a group config against one."""

from __future__ import annotations

from typing import Any

import pytest

from hostagent.deepflow import keys
from hostagent.deepflow.keys import check, first_version_with, table_for

INNER = "inputs.cbpf.af_packet.inner_interface_regex"

# What hostagent's group-config writes today, nested and flat (hostagent/groupconfig.py).
NESTED = {
    "global": {
        "communication": {"proxy_controller_ip": "10.0.0.5", "proxy_controller_port": 30035,
                          "ingester_ip": "10.0.0.9", "ingester_port": 30033},
        "limits": {"max_millicpus": 1000, "max_memory": 768},
    },
    "inputs": {"cbpf": {"common": {"capture_mode": 0},
                        "af_packet": {"interface_regex": "^eth\\d+$", "inner_interface_capture_enabled": True,
                                      INNER.rsplit(".", 1)[1]: "^eth\\d+$",
                                      "tunning": {"ring_blocks_enabled": True, "ring_blocks": 128}}}},
}
LEGACY = {"vtap_group_id": "g-1a2b3c4d5e", "tap_interface_regex": "^eth\\d+$", "tap_mode": 0,
          "proxy_controller_ip": "10.0.0.5", "proxy_controller_port": 30035, "analyzer_ip": "10.0.0.9",
          "analyzer_port": 30033, "max_millicpus": 1000, "max_memory": 768,
          "static_config": {"afpacket-blocks-enabled": True, "afpacket-blocks": 128}}


def nested(**leaves: Any) -> dict[str, Any]:
    """A config from dotted paths: nested(**{"global.limits.max_memory": 64})."""
    out: dict[str, Any] = {}
    for path, value in leaves.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def test_versions_are_ordered() -> None:
    assert list(keys.SERVER_VERSIONS) == sorted(keys.SERVER_VERSIONS, key=keys.parse_version)
    assert keys.parse_version("v7.1") == (7, 1, 0, 0)
    with pytest.raises(ValueError, match="X.Y"):
        keys.parse_version("7.x")


@pytest.mark.parametrize("version,ref", [
    ("6.1", "legacy-v6.5.9"), ("6.5.9", "legacy-v6.5.9"), ("6.6.1", "legacy-v6.5.9"), ("6.6.5", "legacy-v6.5.9"),
    ("6.6.9", "v6.6.9"), ("6.6.9.2410", "v6.6.9"), ("6.6.9.2504", "v6.6.9.2504"), ("6.6.9.2600", "v6.6.9.2504"),
    ("7.0", "v6.6.9"), ("7.0.2", "v7.0.2"), ("7.0.3", "v7.0.3"), ("7.0.9", "v7.0.3"), ("7.1", "v7.1.0"),
    ("v7.1.5", "v7.1.0"), ("7.1.8", "v7.1.8"), ("8.0", "v7.1.8"), ("main", "main"),
])
def test_table_for(version: str, ref: str) -> None:
    table = table_for(version)
    assert table.ref == ref
    assert table.schema == ("legacy" if ref.startswith("legacy") else "nested")


def test_table_for_schema() -> None:
    assert table_for("7.1", "legacy").ref == "legacy-v6.6.9"
    with pytest.raises(ValueError, match="no nested schema"):
        table_for("6.6.5", "nested")
    with pytest.raises(ValueError, match="schema"):
        table_for("7.1", "flat")


def test_first_version_with() -> None:
    assert first_version_with(INNER) == "6.6.9.2504"
    assert first_version_with(INNER, after="7.0.2") == "7.0.3"
    assert first_version_with("global.limits.max_memory") == "6.6.9"
    assert first_version_with("global.limits") == "6.6.9"  # a section
    assert first_version_with("max_memory") == "6.5.9"
    assert first_version_with("max_memory", schema="nested") is None
    assert first_version_with("inputs.ebpf.tunning.kick_kern_nice") == "main"
    assert first_version_with("no.such.key") is None


@pytest.mark.parametrize("version", ["6.6.9.2504", "7.0.3", "7.1", "7.1.8", "main"])
def test_what_hostagent_writes_passes(version: str) -> None:
    assert check(NESTED, table_for(version)) == []


@pytest.mark.parametrize("version", ["6.5.9", "6.6.5", "6.6.9"])
def test_legacy_flat_passes(version: str) -> None:
    assert check(LEGACY, table_for(version, "legacy")) == []


@pytest.mark.parametrize("version,newer", [("6.6.9", "6.6.9.2504"), ("7.0.2", "7.0.3")])
def test_inner_keys_refused_where_missing(version: str, newer: str) -> None:
    problems = check(NESTED, table_for(version))
    assert {p.path for p in problems} == {INNER, "inputs.cbpf.af_packet.inner_interface_capture_enabled"}
    inner = next(p for p in problems if p.path == INNER)
    assert inner.kind == "unknown" and inner.first_version == "6.6.9.2504"
    assert inner.message.startswith(f"unexpected key in configuration: {INNER} (not in the v{version} template")
    assert (f"from v{newer}" in inner.message) == (version == "7.0.2")


@pytest.mark.parametrize("path,value,allowed", [
    ("global.limits.max_memory", 64, "[128, 100000]"),
    ("global.limits.max_millicpus", 200000, "[1, 100000]"),
    ("global.communication.proxy_controller_port", 70000, "[1, 65535]"),
    ("inputs.cbpf.af_packet.tunning.ring_blocks", 4, "[8, 1000000]"),
    ("global.limits.local_log_retention", "1d", "[10d, 10000d]"),
    ("inputs.cbpf.af_packet.interface_regex", "x" * 70000, "[0, 65535]"),
    ("global.tunning.cpu_affinity", [1, 70000], "[0, 65536]"),
])
def test_out_of_range(path: str, value: Any, allowed: str) -> None:
    [problem] = check(nested(**{path: value}), table_for("7.1"))
    assert (problem.kind, problem.path, problem.allowed) == ("range", path, allowed)
    assert f"is outside {allowed}" in problem.message and len(problem.message) < 200


@pytest.mark.parametrize("path,value", [
    ("global.limits.max_memory", "768"),
    ("global.limits.max_memory", True),  # a bool is no int to YAML
    ("global.limits.max_memory", 768.5),  # the server would truncate it
    ("global.limits.max_memory", None),
    ("global.limits.max_memory", [768]),
    ("inputs.cbpf.af_packet.inner_interface_capture_enabled", 1),
    ("global.communication.proxy_controller_ip", 1000.0),
    ("inputs.proc.process_blacklist", "sleep"),
    ("inputs.proc.process_blacklist", ["sleep", 3]),
    ("global.limits", 5),
])
def test_type_mismatch(path: str, value: Any) -> None:
    [problem] = check(nested(**{path: value}), table_for("7.1"))
    assert (problem.kind, problem.path) == ("type", path)


@pytest.mark.parametrize("path,value", [
    ("global.limits.max_memory", 1024.0),  # int and float are compatible
    ("global.circuit_breakers.relative_sys_load.trigger_threshold", 2),
    ("processors.request_log.application_protocol_inference.enabled_protocols", "anything"),  # null template
    ("processors.request_log.filters.port_number_prefilters", {"HTTP": "80"}),  # dict values are opaque
    ("global.limits.local_log_retention", "12d1h"),
    ("global.tunning.cpu_affinity", []),
])
def test_accepted(path: str, value: Any) -> None:
    assert check(nested(**{path: value}), table_for("7.1")) == []


def test_enum() -> None:
    [problem] = check(nested(**{"global.circuit_breakers.sys_memory_percentage.metric": "used"}), table_for("7.1"))
    assert problem.kind == "enum" and problem.allowed == "free, available"


def test_unknown_keys_name_their_versions() -> None:
    flat = check({"max_memory": 768}, table_for("7.1"))
    assert flat[0].message == ("unexpected key in configuration: max_memory (not in the v7.1.0 template; a legacy "
                               "flat key, first in v6.5.9; its nested name is global.limits.max_memory)")
    deep = check(NESTED, table_for("6.5.9"))
    assert [p.path for p in deep] == ["global", "inputs"]
    assert deep[0].message == ("unknown key, which the server drops: global (not in the legacy-v6.5.9 template; "
                               "a nested key, first in v6.6.9)")  # the flat route binds a struct
    assert "in no version" in check({"global": {"nope": 1}}, table_for("7.1"))[0].message


def test_legacy_ranges() -> None:
    table = table_for("6.5.9")
    assert check({"max_millicpus": 200000}, table) == []  # legacy range is [1, 1000000]
    assert check({"max_memory": 64}, table)[0].allowed == "[128, 100000]"


def test_parse_helpers() -> None:
    assert keys.parse_range("[1, 100000]") == ("1", "100000")
    assert keys.parse_range([10, "20d"]) == ("10", "20d")
    assert keys.parse_range("[100, [1000000]") is None and keys.parse_range("[]") is None
    assert keys.parse_enum("[free, available]") == ("free", "available")
    assert keys.parse_enum([{0: {"en": "Local"}}, {1: {"en": "Mirror"}}]) == ("0", "1")
    assert keys.parse_enum("[_DYNAMIC_OPTIONS_]") is None
    assert keys.parse_duration("1h30m") == 5400 * 10**9
    assert keys.parse_duration("0") == 0 and keys.parse_duration("10x") is None
