"""The agent-group config keys each DeepFlow server version accepts, and a check of a config against them.

The server rejects a key its template lacks and checks YAML node types only (template_json.go,
validateNodeAgainstTemplate); neither the server nor the agent checks ranges, so an out-of-range value
takes effect. `check` reports all four: unknown keys, types, ranges and enums.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

NESTED_FROM = "6.6.9"  # the nested schema and its /v1/agent-group-configuration/ route
# Released server versions with a table, oldest first; "main" (unreleased) is asked for by name.
SERVER_VERSIONS = ("6.5.9", "6.6.9", "6.6.9.2504", "7.0.2", "7.0.3", "7.1.0", "7.1.8")
_NESTED = {"6.6.9": "v6.6.9", "6.6.9.2504": "v6.6.9.2504", "7.0.2": "v7.0.2", "7.0.3": "v7.0.3",
           "7.1.0": "v7.1.0", "7.1.8": "v7.1.8"}
_LEGACY = {"6.5.9": "legacy-v6.5.9", "6.6.9": "legacy-v6.6.9"}
# example.yaml has these with an empty (null) value, which the table extraction skipped; a null
# template value matches anything.
_LEGACY_NULL_KEYS = ("extra_netns_regex", "capture_bpf", "decap_type", "proxy_controller_ip", "analyzer_ip",
                     "domains")
_DYNAMIC = "_DYNAMIC_OPTIONS_"  # filled in by the server at run time: no fixed enum


@dataclass(frozen=True)
class KeySpec:
    """One leaf key of a template."""

    path: str
    type: str | None  # int, float, bool, string, ip, duration, dict; None: unknown, any value
    default: Any  # the template's value: None matches anything, a list means a list of `type`
    range: tuple[str, str] | None = None  # bounds as written ("1", "10d"); length for strings
    enum: tuple[str, ...] | None = None
    upgrade_from: str | None = None  # the legacy flat key this one replaces
    unit: str | None = None


@dataclass(frozen=True)
class KeyTable:
    """The leaf keys of one server's template, by dotted path."""

    ref: str  # which table: "v7.1.0", "legacy-v6.5.9", "main", "server template"
    schema: str  # "nested" or "legacy"
    keys: Mapping[str, KeySpec]
    sections: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        parts = {p.rsplit(".", i)[0] for p in self.keys for i in range(1, p.count(".") + 1)}
        object.__setattr__(self, "sections", frozenset(parts))

    def by_upgrade_from(self, flat_key: str) -> str | None:
        """The nested path that replaces a legacy flat key, if any."""
        return next((s.path for s in self.keys.values() if s.upgrade_from == flat_key), None)


@dataclass(frozen=True)
class Problem:
    path: str
    kind: str  # "unknown", "type", "range", "enum"
    message: str
    first_version: str | None = None  # unknown keys: the first server version that has it
    allowed: str | None = None  # range: "[128, 100000]"; enum: "free, available"

    def __str__(self) -> str:
        return self.message


def parse_version(version: str) -> tuple[int, ...]:
    """"7.1" -> (7, 1, 0, 0); "v6.6.9.2504" -> (6, 6, 9, 2504)."""
    text = version[1:] if version[:1] in ("v", "V") else version
    if not re.fullmatch(r"[0-9]+(\.[0-9]+){0,3}", text):
        raise ValueError(f"server version {version!r} is not of the form X.Y[.Z[.P]]")
    nums = tuple(int(n) for n in text.split("."))
    return nums + (0,) * (4 - len(nums))


def _pick(version: str, available: Mapping[str, str]) -> str:
    """The newest table at or below the version, else the oldest. A fourth-number patch (6.6.9.2504)
    counts only for its own X.Y.Z: 7.0.0 was branched before it and lacks its keys."""
    want = parse_version(version)
    eligible = [v for v in available if parse_version(v) <= want
                and (parse_version(v)[3] == 0 or parse_version(v)[:3] == want[:3])]
    pick = max(eligible, key=parse_version) if eligible else min(available, key=parse_version)
    return available[pick]


def table_for(version: str, schema: str | None = None) -> KeyTable:
    """The key table for a server version; schema None picks nested from 6.6.9 on, else legacy flat."""
    if version == "main":
        if schema == "legacy":
            raise ValueError("no legacy flat table for main")
        return _load("main")
    nested_ok = parse_version(version) >= parse_version(NESTED_FROM)
    schema = schema or ("nested" if nested_ok else "legacy")
    if schema == "nested":
        if not nested_ok:
            raise ValueError(f"server {version} has no nested schema (from {NESTED_FROM}): use the legacy flat one")
        return _load(_pick(version, _NESTED))
    if schema == "legacy":
        return _load(_pick(version, _LEGACY))
    raise ValueError(f"schema must be nested or legacy, got {schema!r}")


def _all_tables(schema: str | None = None) -> Iterator[tuple[str, KeyTable]]:
    """(version, table) for every table of the schema (None: both), oldest first; main last."""
    pairs = [(v, n) for v, n in _NESTED.items()] if schema != "legacy" else []
    pairs += [(v, n) for v, n in _LEGACY.items()] if schema != "nested" else []
    for version, name in sorted(pairs, key=lambda p: parse_version(p[0])):
        yield version, _load(name)
    if schema != "legacy":
        yield "main", _load("main")


def first_version_with(key: str, after: str | None = None, schema: str | None = None) -> str | None:
    """The first server version whose template has the dotted key or section: newer than `after` if given, in
    that schema ("nested", "legacy") if given; "main" when only the unreleased main has it."""
    floor = parse_version(after) if after else None
    for version, table in _all_tables(schema):
        if floor is not None and version != "main" and parse_version(version) <= floor:
            continue
        if key in table.keys or key in table.sections:
            return version
    return None


@cache
def _load(name: str) -> KeyTable:
    raw = json.loads(resources.files("hostagent.deepflow").joinpath("keytables").joinpath(f"{name}.json").read_text())
    if name.startswith("legacy-"):
        keys = {e["path"]: _legacy_spec(e) for e in raw["keys"]}
        keys.update({k: KeySpec(k, None, None) for k in _LEGACY_NULL_KEYS if k not in keys})
        return KeyTable(name, "legacy", keys)
    return KeyTable(raw["ref"], "nested", {e["path"]: _nested_spec(e) for e in raw["keys"]})


def _nested_spec(e: Mapping[str, Any]) -> KeySpec:
    unit = str(e["unit"]).strip("'") if e.get("unit") else None
    return KeySpec(e["path"], e["type"], e["default"], parse_range(e.get("range")), parse_enum(e.get("enum_options")),
                   e.get("upgrade_from"), unit)


def _legacy_spec(e: Mapping[str, Any]) -> KeySpec:
    """Flat keys have only an example value as text: its type is the key's type."""
    example = e["example"].strip()
    value: Any
    if re.fullmatch(r"-?[0-9]+", example):
        value, typ = int(example), "int"
    elif re.fullmatch(r"-?[0-9]+\.[0-9]+", example):
        value, typ = float(example), "float"
    elif example in ("true", "false"):
        value, typ = example == "true", "bool"
    elif example.startswith("["):
        value, typ = [], None  # a list: element type not documented
    else:
        value, typ = example.strip('"'), "string"
    return KeySpec(e["path"], typ, value, parse_range(e.get("range")))


def parse_range(text: Any) -> tuple[str, str] | None:
    """"[1, 100000]" or [1, 100000] -> ("1", "100000"); empty or malformed -> None."""
    if isinstance(text, (list, tuple)):
        items = [str(t) for t in text]
    elif isinstance(text, str) and text.startswith("[") and text.endswith("]"):
        items = [t.strip() for t in text[1:-1].split(",")]
    else:
        return None
    if len(items) != 2 or any(not t or "[" in t or "]" in t for t in items):
        return None
    return items[0], items[1]


def parse_enum(options: Any) -> tuple[str, ...] | None:
    """"[free, available]", or the template's list (of values or of {value: label}) -> the values."""
    if isinstance(options, str):
        items = [t.strip() for t in options.strip("[]").split(",") if t.strip()]
    elif isinstance(options, list):
        items = [str(next(iter(o))) if isinstance(o, dict) else str(o) for o in options]
    else:
        return None
    if not items or any(_DYNAMIC in i for i in items):
        return None
    return tuple(items)


# --- checking -------------------------------------------------------------------------------------------

def check(config: Mapping[str, Any], table: KeyTable) -> list[Problem]:
    """Every problem the server (unknown key, type) or the agent (range, enum) would have with `config`."""
    problems: list[Problem] = []
    _walk(config, "", table, problems)
    return problems


def _walk(node: Mapping[str, Any], prefix: str, table: KeyTable, out: list[Problem]) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        spec = table.keys.get(path)
        if spec is not None:
            out.extend(_check_value(spec, value))
        elif path in table.sections:
            if isinstance(value, dict):
                _walk(value, path + ".", table, out)
            else:
                out.append(Problem(path, "type", f"{path}: expected a mapping (a section), got {_kind(value)}"))
        else:
            out.append(_unknown(path, table))


def _unknown(path: str, table: KeyTable) -> Problem:
    match = re.search(r"v([0-9][0-9.]*)$", table.ref)
    first = first_version_with(path, schema=table.schema)
    later = first_version_with(path, after=match.group(1), schema=table.schema) if match else first
    # The nested route rejects the whole config with these words; the flat one binds a struct and
    # drops an unknown key without a word.
    lead = "unexpected key in configuration" if table.schema == "nested" else "unknown key, which the server drops"
    msg = f"{lead}: {path} (not in the {table.ref} template"
    if first is None:
        other = first_version_with(path)
        kind = "nested" if table.schema == "legacy" else "legacy flat"
        msg += f"; a {kind} key, first in {_v(other)}" if other else "; in no version"
        renamed = table.by_upgrade_from(path)
        msg += f"; its nested name is {renamed}" if renamed else ""
    elif later and later != first:
        msg += f"; first in {_v(first)}, on newer servers from {_v(later)}"
    else:
        msg += f"; first in {_v(first)}"
    return Problem(path, "unknown", msg + ")", first_version=first)


def _v(version: str) -> str:
    return version if version == "main" else "v" + version


def _kind(value: Any) -> str:
    """The YAML node kind a value is written as."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_ACCEPTS = {"int": ("int", "float"), "float": ("int", "float"), "bool": ("bool",), "string": ("str",),
            "ip": ("str",), "duration": ("str",)}


def _check_value(spec: KeySpec, value: Any) -> list[Problem]:
    # A null template value matches anything; the server turns dict-typed values into strings on both
    # sides before comparing, so any mapping, list or string passes.
    if spec.default is None or spec.type == "dict":
        return []
    if isinstance(spec.default, list):
        if not isinstance(value, (list, tuple)):
            return [Problem(spec.path, "type", f"{spec.path}: expected a list, got {_kind(value)}")]
        return [p for item in value for p in _check_scalar(spec, item)]
    return _check_scalar(spec, value)


def _check_scalar(spec: KeySpec, value: Any) -> list[Problem]:
    kind = _kind(value)
    accepts = _ACCEPTS.get(spec.type or "") or ((_kind(spec.default),) if spec.type else None)
    if accepts is not None and kind not in accepts:
        return [Problem(spec.path, "type", f"{spec.path}: scalar type mismatch: expected {spec.type}, got {kind}"
                        f" {_show(value)}")]
    if spec.type == "int" and isinstance(value, float) and not value.is_integer():
        return [Problem(spec.path, "type", f"{spec.path}: expected int, got {value!r} (the server truncates it)")]
    if spec.enum is not None and str(value) not in spec.enum:
        allowed = ", ".join(spec.enum)
        return [Problem(spec.path, "enum", f"{spec.path}: {_show(value)} is not one of {allowed}", allowed=allowed)]
    if spec.range is not None and not _in_range(spec, value):
        allowed = f"[{spec.range[0]}, {spec.range[1]}]"
        what = f"{_show(value)} (length {len(value)})" if isinstance(value, str) and spec.type == "string" else repr(value)
        unit = f" {spec.unit}" if spec.unit else ""
        return [Problem(spec.path, "range", f"{spec.path}: {what} is outside {allowed}{unit}", allowed=allowed)]
    return []


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_range(spec: KeySpec, value: Any) -> bool:
    """True when inside the bounds, or when they cannot be compared (unknown unit): not our call then."""
    assert spec.range is not None
    if spec.type == "duration":
        low, high, val = (parse_duration(x) for x in (*spec.range, value))
        return low is None or high is None or val is None or low <= val <= high
    try:
        low_n, high_n = float(spec.range[0]), float(spec.range[1])
    except ValueError:
        return True
    measure = len(value) if isinstance(value, str) else value
    return bool(low_n <= measure <= high_n) if isinstance(measure, (int, float)) else True


_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                   "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h|d)")


def parse_duration(text: Any) -> float | None:
    """"1h30m" -> nanoseconds; a bare "0" -> 0; anything else -> None."""
    if not isinstance(text, str):
        return None
    if text.strip() == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
