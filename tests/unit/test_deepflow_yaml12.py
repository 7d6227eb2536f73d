"""YAML that go-yaml v3, a YAML 1.2 reader (ruamel.yaml) and a YAML 1.1 reader (PyYAML) all type as written."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
import yaml

from hostagent.deepflow import yaml12

# Strings some reader takes for a number, bool, null or timestamp, and some it does not.
TRICKY = ["1e3", "1E3", "1e-3", "0o17", "0O17", "08", "09.5", "017", "0x1F", "0X1f", "0b101", "-0b1", "+1", "-0",
          ".5", "1.", "1_000", "1_", "_1", "1:20", "1:20.5", "2024-01-02", "2024-1-2 10:00:00", "10.0.0.1", "1.2.3",
          "~", "null", "Null", "NULL", "nULL", "", "true", "True", "TRUE", "tRUE", "false", "yes", "Yes", "YES", "no",
          "on", "On", "ON", "off", "y", "Y", "n", "N", ".inf", "-.inf", "+.INF", ".nan", ".NaN", "inf", "nan", "NaN",
          "=", "<<", "-", "+", ".", "30035", "-1", "1e", "e3", "0xZZ", "12:30:45", "eth0", "^eth\\d+$",
          "^(tap.*|cali.*|lo)$", "fd00::5", "deepflow.example", "g-1a2b3c4d5e", "300d", "60s", "a: b", "#x",
          "- x", "[x]", "{x}", "*x", "&x", "!x", "%x", "@x", "`x", "|", ">", "'", '"', " x", "x ", "x\ny", "\t"]

# What go-yaml v3 (resolve.go) makes of an unquoted scalar.
GO_YAML = {"1e3": "float", "08": "float", "0o17": "int", "017": "int", "0x1F": "int", "0b101": "int", "+1": "int",
           "1_000": "int", "1_": "int", "_1": "str", ".5": "float", "1.": "float", "1:20": "str", "yes": "str",
           "on": "str", "y": "str", "True": "bool", "tRUE": "str", "~": "null", "": "null", ".inf": "float",
           "inf": "str", "2024-01-02": "timestamp", "10.0.0.1": "str", "eth0": "str", "-": "str", "<<": "str"}


@pytest.mark.parametrize("plain,tag", sorted(GO_YAML.items()))
def test_go_yaml_tag(plain: str, tag: str) -> None:
    assert yaml12.go_yaml_tag(plain) == tag


def _ruamel12() -> Any:
    try:
        from ruamel.yaml import YAML
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("ruamel.yaml (the YAML 1.2 reader) is not installed; it is in the test extras")
        pytest.skip("ruamel.yaml not installed")
    reader = YAML(typ="safe", pure=True)
    reader.version = (1, 2)
    return reader


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


DATA: dict[str, Any] = {
    "strings": TRICKY,
    "keys": {s: s for s in TRICKY if s},
    "numbers": [0, 1, -1, 30035, 2**40, 1.5, 1e20, 1e-5, -0.0, float("inf"), float("-inf"), float("nan")],
    "other": [True, False, None, [], {}],
    "global": {"communication": {"proxy_controller_ip": "1e3", "proxy_controller_port": 30035}},
}


@pytest.mark.parametrize("reader", ["ruamel-1.2", "pyyaml-1.1", "yaml12.load"])
def test_types_survive(reader: str) -> None:
    text = yaml12.dump(DATA)
    if reader == "ruamel-1.2":
        back = _ruamel12().load(text)
    elif reader == "pyyaml-1.1":
        back = yaml.safe_load(text)
    else:
        back = yaml12.load(text)
    assert _same(back, DATA), text


def test_only_ambiguous_strings_are_quoted() -> None:
    text = yaml12.dump({"a": "eth0", "b": "1e3", "c": "yes", "d": 5})
    assert text == "a: eth0\nb: '1e3'\nc: 'yes'\nd: 5\n"


def test_load_reads_like_go_yaml() -> None:
    assert yaml12.load("a: 1e3\nb: 0o17\nc: 08\nd: yes\ne: ~\nf: 0x1F\ng: '1e3'\nh: 1_000\ni: -0b11\n") == {
        "a": 1000.0, "b": 15, "c": 8.0, "d": "yes", "e": None, "f": 31, "g": "1e3", "h": 1000, "i": -3}


def test_a_whole_template_keeps_its_types() -> None:
    """Every default of a server's template, and tricky strings where strings go, read back by a 1.2 reader,
    pass the server's type check."""
    from hostagent.deepflow.keys import check, table_for

    table = table_for("7.1.8")
    config: dict[str, Any] = {}
    strings = iter(TRICKY * 10)
    for spec in table.keys.values():
        if spec.default is None or spec.type == "dict" or any(spec.path.startswith(p + ".") for p in table.keys):
            continue
        value = next(strings) if spec.type in ("string", "ip") and isinstance(spec.default, str) else spec.default
        node = config
        *parents, leaf = spec.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    back = _ruamel12().load(yaml12.dump(config))
    assert _same(back, config)
    assert [p for p in check(back, table) if p.kind == "type"] == []
