"""A server's own agent-group template (GET /v1/agent-group-configuration/template/yaml) as a KeyTable.

The template is YAML whose keys each follow a comment block that is itself YAML once uncommented
(`# type: int`, `# range: [1, 100000]`, `# enum_options: [...]`, `# upgrade_from: ...`). As the server
does (template_json.go, LineFormatter), each block becomes a sibling `<key>_comment:` mapping; the
`# ---` part of a block documents the fields of a dict value and is skipped, as are TODO lines.
`render_template` writes the same format from a table, for servers faked from the key tables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from hostagent.deepflow import yaml12
from hostagent.deepflow.keys import KeySpec, KeyTable, parse_enum, parse_range

_KEY_LINE = re.compile(r"(\s*)([^\s#:'\"-][^:]*):(\s|$)")
_COMMENT = "_comment"


def parse_template(text: str, ref: str = "server template") -> KeyTable:
    """The leaf keys of a template, typed from their comment blocks (else from their values)."""
    try:
        data = yaml12.load(_uncomment(text))
    except yaml.YAMLError as exc:
        raise ValueError(f"not an agent-group template: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not an agent-group template: no mapping at the top")  # noqa: TRY004 - bad content
    return KeyTable(ref, "nested", {s.path: s for s in _leaves(data, "")})


def _uncomment(text: str) -> str:
    out: list[str] = []
    block: list[str] = []
    in_dict_fields = False  # past a "# ---": field docs of a dict value, not this key's own
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):
            if stripped.startswith("# ---"):
                in_dict_fields = True
            elif "TODO" not in line and not in_dict_fields:
                block.append(line)
            continue
        key = _KEY_LINE.match(line)
        if key and block:
            out.append(f"{key.group(1)}{key.group(2)}{_COMMENT}:")
            out.extend("  " + _uncomment_line(b) for b in block)
        block, in_dict_fields = [], False
        out.append(line)
    return "\n".join(out)


def _uncomment_line(line: str) -> str:
    line = line.replace("# ", "", 1)
    return line.replace("#", "", 1) if line.strip() == "#" else line


def _leaves(node: Mapping[str, Any], prefix: str) -> Iterator[KeySpec]:
    for key, value in node.items():
        if str(key).endswith(_COMMENT):
            continue
        path = f"{prefix}{key}"
        meta = node.get(f"{key}{_COMMENT}")
        meta = meta if isinstance(meta, dict) else {}
        kind = meta.get("type")
        if kind == "section" or (kind is None and isinstance(value, dict)):
            yield from _leaves(value if isinstance(value, dict) else {}, path + ".")
            continue
        unit, default = meta.get("unit"), _without_comments(value)
        yield KeySpec(path, kind or _type_of(default), default, parse_range(meta.get("range")),
                      parse_enum(meta.get("enum_options")), meta.get("upgrade_from"), str(unit) if unit else None)


def _without_comments(value: Any) -> Any:
    """A dict value's fields carry comment blocks too: not part of the value."""
    if isinstance(value, dict):
        return {k: _without_comments(v) for k, v in value.items() if not str(k).endswith(_COMMENT)}
    return value


def _type_of(value: Any) -> str | None:
    item = value[0] if isinstance(value, list) and value else value
    for python, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"), (dict, "dict")):
        if isinstance(item, python):
            return name
    return None


def render_template(table: KeyTable) -> str:
    """A template in the server's format holding the table's keys, types, ranges, enums and defaults
    (not the fields inside dict values, which the tables list too)."""
    tree: dict[str, Any] = {}
    opaque = {p for p, s in table.keys.items() if s.type == "dict"}
    for spec in table.keys.values():
        if any(spec.path.startswith(p + ".") for p in opaque):
            continue  # documents a field inside a dict value: the value itself is not checked
        node = tree
        *parents, leaf = spec.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if isinstance(node, KeySpec):
                raise ValueError(f"{spec.path}: {part} is both a key and a section")  # noqa: TRY004 - bad table
        node[leaf] = spec
    return "".join(_render(tree, 0))


def _render(tree: Mapping[str, Any], depth: int) -> Iterator[str]:
    pad = "  " * depth
    for key, node in tree.items():
        if isinstance(node, dict):
            yield f"{pad}# type: section\n{pad}{key}:\n"
            yield from _render(node, depth + 1)
            continue
        spec: KeySpec = node
        yield f"{pad}# type: {spec.type or 'string'}\n"
        if spec.unit:
            yield f"{pad}# unit: {json.dumps(spec.unit)}\n"  # JSON strings are YAML: "%" needs quotes
        yield f"{pad}# range: [{', '.join(spec.range) if spec.range else ''}]\n"
        yield f"{pad}# enum_options: [{', '.join(spec.enum) if spec.enum else ''}]\n"
        if spec.upgrade_from:
            yield f"{pad}# upgrade_from: {json.dumps(spec.upgrade_from)}\n"
        body = yaml12.dump({key: spec.default})
        yield "".join(f"{pad}{line}\n" for line in body.splitlines())
