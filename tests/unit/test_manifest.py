"""The manifest owns its schema: it reads v1 manifests, and refuses a damaged one with a clear line."""
from __future__ import annotations

import base64
import json

import pytest

from hostagent import manifest
from hostagent.errors import InputError
from hostagent.steps import Directory, File

V1 = {
    "version": 1, "hostagent": "0.1.0", "installed_at": "2026-11-30T10:00:00Z", "state_dir_created": True,
    "options": {}, "facts": {},
    "steps": [
        {"id": "dir:/var/log/deepflow-agent", "kind": "dir", "record": {"created": True},
         "params": {"path": "/var/log/deepflow-agent", "mode": 0o750, "owner": "deepflow", "group": "deepflow",
                    "purge": True}},
        {"id": "file:/etc/x.yaml", "kind": "file", "record": {"before": None},
         "params": {"path": "/etc/x.yaml", "content_b64": base64.b64encode(b"a: 1\n").decode(), "mode": 0o640,
                    "owner": "root", "group": "deepflow"}},
    ],
}


def write(tmp_path, data) -> str:
    path = tmp_path / "manifest.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_reads_a_v1_manifest(tmp_path) -> None:
    m = manifest.load(write(tmp_path, V1))
    assert m is not None and m.data["version"] == manifest.VERSION
    (log_dir, _), (config, _) = m.steps()
    assert isinstance(log_dir, Directory) and log_dir.holds_data
    assert isinstance(config, File) and config.content == "a: 1\n"


@pytest.mark.parametrize("data, message", [
    ("{not json", "not valid JSON"),
    ([], "not a JSON object"),
    ({"version": 2}, "damaged"),
    ({"version": 2, "steps": [{"id": "x"}]}, "damaged"),
    ({"version": 2, "steps": [{"id": "x", "kind": "frob", "params": {}, "record": {}}]}, "unknown kind 'frob'"),
    ({"version": 2, "steps": [{"id": "x", "kind": "dir", "params": {"path": "/x"}, "record": {}}]}, "bad params"),
    ({"version": 9, "steps": []}, "manifest version 9"),
])
def test_refuses_a_damaged_manifest(tmp_path, data, message) -> None:
    with pytest.raises(InputError, match=message) as e:
        manifest.load(write(tmp_path, data))
    assert "\n" not in str(e.value)
