"""YAML that every reader types as the Python value: go-yaml v3 (the server), YAML 1.2 and YAML 1.1.

PyYAML quotes only the strings its own YAML 1.1 resolver would read as something else, so `1e3`,
`0o17`, `08` or `1_` came out plain and the server (go-yaml v3) read them as numbers ("scalar type
mismatch"). Here a string is quoted whenever any of those readers would read it as a null, bool,
number or timestamp.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_NULL = {"", "~", "null", "Null", "NULL"}
# go-yaml v3 and YAML 1.2 booleans; YAML 1.1 (go-yaml v2, PyYAML, libyaml users) adds the rest.
_BOOL12 = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_BOOL11 = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"}
_SPECIAL_FLOAT = {".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"), "+.inf": float("inf"),
                  "+.Inf": float("inf"), "+.INF": float("inf"), "-.inf": float("-inf"), "-.Inf": float("-inf"),
                  "-.INF": float("-inf"), ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan")}
# strconv.ParseInt(s, 0, 64) after go-yaml v3 removed every "_": 0x.., 0o.., 0b.., 0.. (octal), decimal.
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")  # yamlStyleFloat
_GO_TIMESTAMP = re.compile(r"[0-9]{4}-")  # parseTimestamp's gate; quoting every such string is harmless
# YAML 1.1 spec types, wider than PyYAML's: 1.2.3 and 10.0.0.1 are floats, 1:20 is sexagesimal.
_YAML11 = re.compile(r"""[-+]?0b[01_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?|[-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)?
    |[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*|<<|=""", re.VERBOSE)


def go_yaml_tag(plain: str) -> str:
    """The tag go-yaml v3 gives an unquoted scalar: null, bool, int, float, timestamp or str."""
    if plain in _NULL:
        return "null"
    if plain in _BOOL12:
        return "bool"
    if plain in _SPECIAL_FLOAT:
        return "float"
    if plain[:1] == "." and _GO_FLOAT.fullmatch(plain):
        return "float"
    if plain[:1] and plain[0] in "+-0123456789":
        if _GO_TIMESTAMP.match(plain):
            return "timestamp"
        digits = plain.replace("_", "")
        if _GO_INT.fullmatch(digits):
            return "int"
        if _GO_FLOAT.fullmatch(digits):
            return "float"
    return "str"


def ambiguous(text: str) -> bool:
    """Whether some YAML reader would take this string, unquoted, for something else than a string."""
    return go_yaml_tag(text) != "str" or text in _BOOL11 or bool(_YAML11.fullmatch(text))


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Single quotes where they can carry the text; the emitter falls back to double quotes.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'" if ambiguous(value) else None)


_Dumper.add_representer(str, _represent_str)


def dump(data: Any) -> str:
    """Block-style YAML, keys in the given order, every string typed as a string by every reader."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


class _Loader(yaml.SafeLoader):
    """go-yaml v3's reading of plain scalars (YAML 1.2 core plus its own rules), not PyYAML's 1.1 one."""


_Loader.yaml_implicit_resolvers = {}  # go_yaml_tag decides instead, for every plain scalar
_Loader.add_implicit_resolver("tag:deepflow:plain", re.compile(r"(?s).*"), None)


def _construct_plain(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node))
    tag = go_yaml_tag(text)
    if tag == "null":
        return None
    if tag == "bool":
        return _BOOL12[text]
    if tag == "int":
        return _go_int(text.replace("_", ""))
    if tag == "float":
        return _SPECIAL_FLOAT[text] if text in _SPECIAL_FLOAT else float(text.replace("_", ""))
    return text  # str, and timestamps kept as their text


def _go_int(digits: str) -> int:
    sign = -1 if digits[:1] == "-" else 1
    body = digits.lstrip("+-")
    if body[:2].lower() in ("0x", "0o", "0b"):
        return sign * int(body, 0)
    return sign * (int(body, 8) if len(body) > 1 and body[0] == "0" else int(body))


_Loader.add_constructor("tag:deepflow:plain", _construct_plain)


def load(text: str) -> Any:
    """Read YAML the way the server does (go-yaml v3), as plain Python data."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
