"""The manifest: what install applied, in order, with what was there before. Written atomically
after every step so an interrupted run can still be undone. This module owns its schema."""
from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from hostagent import __version__, fsutil, paths
from hostagent.errors import InputError
from hostagent.facts.files import read_nofollow
from hostagent.steps import Step, from_dict
from hostagent.steps.base import Record

VERSION = 2
ENTRY_KEYS = ("id", "kind", "params", "record")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _migrate_v1(data: dict[str, Any]) -> None:
    """v1 kept file contents base64-encoded in the params and a runtime "keep" flag on dirs."""
    for entry in data.get("steps", []):
        params = entry.get("params") if isinstance(entry, dict) else None
        if not isinstance(params, dict):
            continue
        if entry.get("kind") == "file" and "content_b64" in params:
            params["content"] = base64.b64decode(params.pop("content_b64")).decode()
        if entry.get("kind") == "dir":
            params.pop("keep", None)
    data["version"] = VERSION


class Manifest:
    def __init__(self, data: dict[str, Any], path: str = paths.MANIFEST) -> None:
        self.data = data
        self.path = path

    @classmethod
    def new(cls, options: dict[str, Any], facts: dict[str, Any]) -> Manifest:
        return cls({"version": VERSION, "hostagent": __version__, "installed_at": _now(), "updated_at": None,
                    "state_dir_created": False, "options": options, "facts": facts, "steps": []})

    @property
    def entries(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = self.data["steps"]
        return steps

    def steps(self) -> list[tuple[Step, Record]]:
        """Each recorded step rebuilt, with its record, in install order."""
        return [(from_dict(e), e["record"]) for e in self.entries]

    def record_of(self, step_id: str) -> Optional[Record]:
        for e in self.entries:
            if e["id"] == step_id:
                record: Record = e["record"]
                return record
        return None

    def put(self, step: Step, record: Record) -> None:
        entry = {**step.to_dict(), "record": record}
        for i, existing in enumerate(self.entries):
            if existing["id"] == step.id:
                self.entries[i] = entry
                return
        self.entries.append(entry)

    def drop(self, step_id: str) -> None:
        self.data["steps"] = [e for e in self.entries if e["id"] != step_id]

    def update_run(self, options: dict[str, Any], facts: dict[str, Any]) -> None:
        self.data.update(options=options, facts=facts, hostagent=__version__)

    def save(self) -> None:
        self.data["updated_at"] = _now()
        fsutil.atomic_write(self.path, json.dumps(self.data, indent=2).encode() + b"\n", 0o600)

    def remove(self) -> None:
        fsutil.remove_file(self.path)
        if os.path.isdir(paths.BACKUP_DIR) and not os.listdir(paths.BACKUP_DIR):
            os.rmdir(paths.BACKUP_DIR)
        if self.data.get("state_dir_created"):
            try:
                os.rmdir(paths.STATE_DIR)
            except OSError:
                pass  # something else lives there now; leave it

    def copy(self) -> Manifest:
        return Manifest(json.loads(json.dumps(self.data)), self.path)


def load(path: str = paths.MANIFEST) -> Optional[Manifest]:
    """The manifest on this host, None when there is none; a damaged one is refused with its reason."""
    raw = read_nofollow(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise InputError(f"{path} is not valid JSON; refusing to guess what was installed") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a hostagent manifest (not a JSON object)")
    if data.get("version") == 1:
        _migrate_v1(data)
    if data.get("version") != VERSION:
        raise InputError(f"{path} has manifest version {data.get('version')!r}, this hostagent reads {VERSION}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not all(isinstance(e, dict) and all(k in e for k in ENTRY_KEYS) for e in steps):
        raise InputError(f"{path} is damaged: every step needs {', '.join(ENTRY_KEYS)}")
    manifest = Manifest(data, path)
    manifest.steps()  # refuses unknown kinds and bad params now, not half-way through an uninstall
    return manifest


def ensure_state_dir() -> bool:
    """Create the state dir; True if this call created it (uninstall then removes it)."""
    fsutil.refuse_symlink(paths.STATE_DIR)
    try:
        os.mkdir(paths.STATE_DIR, 0o700)
        return True
    except FileExistsError:
        return False


@contextmanager
def locked(timeout: float = 30.0) -> Iterator[None]:
    """Serialize concurrent hostagent runs on this host."""
    fd = os.open(paths.LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise InputError(f"another hostagent run holds {paths.LOCK_FILE}; try again when it ends") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)
