"""The manifest: what install applied, in order, with what was there before. This module owns its
schema.

Write-ahead: a step's entry (with the state to restore) is saved as "applying" before the step
changes anything and marked "applied" after, so after a crash at any point the next install or
uninstall knows every change that may have been made. Saves are atomic (write, fsync, rename,
fsync the directory); the state dir and the first manifest appear together, by one rename."""
from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import secrets
import stat
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from hostagent import __version__, host
from hostagent.errors import InputError
from hostagent.facts.files import read_nofollow
from hostagent.host import fs as fsutil
from hostagent.host import paths
from hostagent.steps import KINDS, Step, from_dict
from hostagent.steps.base import Record

VERSION = 3
ENTRY_KEYS = ("id", "kind", "params", "record")


def _at(path: str) -> str:
    """A host path (the manifest's, the state dir's) where this process finds it."""
    return host.current().path(path)


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
    data["version"] = 2


def _migrate_v2(data: dict[str, Any]) -> None:
    """v2 wrote a systemd unit as a file step with reload_systemd, and named services by their unit."""
    for entry in data.get("steps", []) + data.get("after_revert", []):
        params = entry.get("params") if isinstance(entry, dict) else None
        if not isinstance(params, dict):
            continue
        if entry.get("kind") == "file" and params.pop("reload_systemd", False):
            entry["kind"] = "service-definition"
            entry["id"] = f"service-definition:{params.get('path')}"
        elif entry.get("kind") == "file":
            params.pop("reload_systemd", None)
        if entry.get("kind") == "service" and str(params.get("name", "")).endswith(".service"):
            params["name"] = params["name"][: -len(".service")]
            entry["id"] = f"service:{params['name']}"
    data["version"] = VERSION


def _migrate(data: dict[str, Any]) -> None:
    if data.get("version") == 1:
        _migrate_v1(data)
    if data.get("version") == 2:
        _migrate_v2(data)


class Manifest:
    def __init__(self, data: dict[str, Any], path: str = paths.MANIFEST) -> None:
        self.data = data
        self.path = path

    @classmethod
    def new(cls, options: dict[str, Any], facts: dict[str, Any], path: str = paths.MANIFEST) -> Manifest:
        return cls({"version": VERSION, "hostagent": __version__, "installed_at": _now(), "updated_at": None,
                    "state_dir_created": False, "options": options, "facts": facts, "steps": []}, path)

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

    def put(self, step: Step, record: Record, state: str = "applied") -> None:
        entry = {**step.to_dict(), "record": record, "state": state}
        for i, existing in enumerate(self.entries):
            if existing["id"] == step.id:
                self.entries[i] = entry
                return
        self.entries.append(entry)

    def drop(self, step_id: str) -> None:
        self.data["steps"] = [e for e in self.entries if e["id"] != step_id]

    def pending_after_revert(self) -> list[tuple[Step, Record]]:
        """Steps reverted by an uninstall whose after_revert (e.g. restart a packaged service) has not run."""
        return [(from_dict(e), e["record"]) for e in self.data.get("after_revert", [])]

    def queue_after_revert(self, step: Step, record: Record) -> None:
        self.data.setdefault("after_revert", []).append({**step.to_dict(), "record": record})

    def done_after_revert(self, step_id: str) -> None:
        self.data["after_revert"] = [e for e in self.data.get("after_revert", []) if e["id"] != step_id]

    def referenced_backups(self) -> set[str]:
        found = set()
        for e in self.entries + self.data.get("after_revert", []) + self.data.get("unproven", []):
            backup = _backup_of(e)
            if backup:
                found.add(os.path.basename(str(backup)))
        return found

    def remote_upgrade(self) -> Optional[tuple[str, str]]:
        """The remote-upgrade mode in force (allow | deny) and why: where the recorded binary (or the upgrade
        dir) is, else what the run recorded (one killed before either); None while nothing says. Why: as
        recorded with the facts since --remote-upgrade auto (before: the option as given, or none)."""
        h = host.current()
        upgradable = {h.path(paths.AGENT_UPGRADE_DIR), h.path(paths.AGENT_UPGRADABLE)}
        entries = [(e.get("kind"), (e.get("params") or {}).get("path")) for e in self.entries]
        found = (self.data.get("facts") or {}).get("remote_upgrade")
        if any(path in upgradable for _, path in entries):
            mode = "allow"
        elif any(kind == "binary" for kind, _ in entries):
            mode = "deny"
        elif isinstance(found, dict) and found.get("mode") in ("allow", "deny"):
            mode = found["mode"]
        else:
            return None
        if isinstance(found, dict) and found.get("mode") == mode:
            return mode, str(found.get("why") or "")
        if (self.data.get("options") or {}).get("remote_upgrade") == mode:
            return mode, f"--remote-upgrade {mode}"
        return mode, "installed before --remote-upgrade auto (the binary stays where it was installed)"

    def update_run(self, options: dict[str, Any], facts: dict[str, Any]) -> None:
        self.data.update(options=options, facts=facts, hostagent=__version__)

    def _bytes(self) -> bytes:
        return json.dumps(self.data, indent=2).encode() + b"\n"

    def save(self) -> None:
        self.data["updated_at"] = _now()
        state_dir = os.path.dirname(self.path)
        if state_dir == paths.STATE_DIR and not os.path.lexists(_at(state_dir)):
            self._create_state_dir(_at(state_dir))
            return
        fsutil.atomic_write(_at(self.path), self._bytes(), 0o600)

    def _create_state_dir(self, state_dir: str) -> None:
        """The state dir and its first manifest in one rename: a crash leaves both or neither
        (plus a temp dir that the next run removes)."""
        parent = os.path.dirname(state_dir)
        self.data["state_dir_created"] = True
        tmp = os.path.join(parent, f".{os.path.basename(state_dir)}{fsutil.TEMP_MARK}{secrets.token_hex(8)}")
        os.mkdir(tmp, 0o700)
        fsutil.atomic_write(os.path.join(tmp, os.path.basename(self.path)), self._bytes(), 0o600)
        os.rename(tmp, state_dir)
        fsutil.fsync_dir(parent)

    def remove(self) -> None:
        """The end of an uninstall. What `--force` could not prove stays: an unreadable manifest as it is,
        else the manifest with just those entries, and every backup they name (the only copy of a file
        install replaced)."""
        if self.data.get("unreadable"):
            return
        self.data["unproven"] = [u for u in self.data.get("unproven", []) if _original_kept(u, self.path)]
        if self.data["unproven"]:
            self.data["steps"], self.data["after_revert"] = [], []
            self.save()
            return
        fsutil.remove_file(_at(self.path))
        collect_backups(set())
        backups = _at(paths.BACKUP_DIR)
        if os.path.isdir(backups) and not os.listdir(backups):
            os.rmdir(backups)
        if self.data.get("state_dir_created"):
            try:
                os.rmdir(_at(paths.STATE_DIR))
            except OSError:  # something else lives there now; leave it
                _hand_over_state_dir(self.path)

    def copy(self) -> Manifest:
        return Manifest(json.loads(json.dumps(self.data)), self.path)


FORCE_HINT = "; `hostagent uninstall --force` reverts what it can prove and lists the rest"


def _backup_of(entry: Any) -> Optional[str]:
    record = entry.get("record") if isinstance(entry, dict) else None
    backup = record.get("backup") if isinstance(record, dict) else None
    return str(backup) if backup else None


def _original_kept(entry: Any, path: str) -> Optional[str]:
    """Where an entry keeps the only copy of what install replaced: its backup file, or the manifest
    itself (a file's content in the record); None when it keeps none."""
    backup = _backup_of(entry)
    if backup and os.path.exists(backup):
        return backup
    record = entry.get("record") if isinstance(entry, dict) else None
    before = record.get("before") if isinstance(record, dict) else None
    return path if isinstance(before, dict) and before.get("content_b64") else None


def _unproven_note(entry: Any, reason: str, path: str) -> str:
    """What a forced uninstall left, and where the original is: the admin restores it by hand."""
    line = f"{entry.get('id', '?') if isinstance(entry, dict) else '?'}: not reverted ({reason}); check it by hand"
    kept = _original_kept(entry, path)
    if kept == path:
        line += (f"; what it replaced is kept in {path} (this entry's record.before.content_b64): restore it from "
                 f"there if wanted, then delete {path}")
    elif kept:
        line += (f"; what it replaced is kept at {kept}: restore it from there if wanted, delete that file, then "
                 "run `hostagent uninstall --force` again to finish (until then the manifest keeps this entry)")
    return line


def load(path: str = paths.MANIFEST) -> Optional[Manifest]:
    """The manifest on this host, None when there is none; a damaged one is refused with its reason."""
    raw = read_nofollow(_at(path))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise InputError(f"{path} is not valid JSON (truncated?){FORCE_HINT}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a hostagent manifest (not a JSON object){FORCE_HINT}")
    _migrate(data)
    if isinstance(data.get("version"), int) and data["version"] > VERSION:
        raise InputError(f"{path} was written by hostagent {data.get('hostagent')} (manifest version "
                         f"{data['version']}); this hostagent {__version__} reads version {VERSION}: uninstall with "
                         f"that hostagent{FORCE_HINT}")
    if data.get("version") != VERSION:
        raise InputError(f"{path} has manifest version {data.get('version')!r}, this hostagent reads {VERSION}{FORCE_HINT}")
    if data.get("unproven"):
        ids = ", ".join(str(u.get("id", "?")) if isinstance(u, dict) else "?" for u in data["unproven"])
        raise InputError(f"{path} keeps entries an earlier `uninstall --force` could not prove ({ids}){FORCE_HINT}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not all(_entry_ok(e) for e in steps):
        raise InputError(f"{path} is damaged: every step needs {', '.join(ENTRY_KEYS)}{FORCE_HINT}")
    manifest = Manifest(data, path)
    try:
        manifest.steps()  # refuses unknown kinds and bad params now, not half-way through an uninstall
        manifest.pending_after_revert()
    except InputError as e:
        raise InputError(f"{path}: {e}{FORCE_HINT}") from None
    return manifest


def _entry_ok(e: Any) -> bool:
    return isinstance(e, dict) and all(k in e for k in ENTRY_KEYS) and isinstance(e["record"], dict)


def load_forced(path: str = paths.MANIFEST) -> tuple[Optional[Manifest], list[str]]:
    """For `uninstall --force`: the entries that can be rebuilt, and a line for each that cannot. Those
    are kept (data["unproven"], with their reason) so that no save drops them and no cleanup removes the
    backups they name."""
    raw = read_nofollow(_at(path))
    if raw is None:
        return None, []
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        return Manifest({"version": VERSION, "steps": [], "state_dir_created": False, "unreadable": True}, path), [
            f"{path} is unreadable: no step can be proven; left it and every backup in {paths.BACKUP_DIR} in place: "
            f"check {', '.join(paths.INSTALLED_PATHS)} by hand (a backup is a file install replaced, named by its "
            f"SHA-256), then delete {path}"]
    _migrate(data)
    kept, unproven = [], [u for u in data.get("unproven") or [] if isinstance(u, dict)]
    for e in data["steps"]:
        try:
            if not _entry_ok(e):
                raise InputError("incomplete entry")
            from_dict(e)
            kept.append(e)
        except InputError as err:
            if isinstance(e, dict):
                e["unproven"] = str(err)
            unproven.append(e if isinstance(e, dict) else {"id": "?", "unproven": str(err), "entry": e})
    data["steps"] = kept
    data["unproven"] = unproven
    data["version"] = VERSION
    data.setdefault("after_revert", [])
    data["after_revert"] = [e for e in data["after_revert"] if _entry_ok(e) and e.get("kind") in KINDS]
    return Manifest(data, path), [_unproven_note(u, str(u.get("unproven")), path) for u in unproven]


def flush_host() -> None:
    """Make a step's changes durable before the manifest records them: a power cut must not keep the
    record and lose the change (or the reverse) where the manifest's fsync does not carry them (another
    filesystem, btrfs's per-file log, a tool that renamed without flushing)."""
    fsutil.sync_filesystems(_at(d) for d in ("/etc", *paths.WRITTEN_DIRS))


def _hand_over_state_dir(removed: str) -> None:
    """The state dir stays for another service's manifest: that one removes it when it goes."""
    for other in paths.MANIFESTS:
        if other != removed and os.path.lexists(_at(other)):
            try:
                found = load(other)
            except InputError:
                continue
            if found is not None and not found.data.get("state_dir_created"):
                found.data["state_dir_created"] = True
                fsutil.atomic_write(_at(found.path), found._bytes(), 0o600)
            return


def collect_backups(keep: set[str]) -> None:
    """Remove backups that no manifest entry refers to (left by re-runs, rollbacks or crashes); the
    backups of every manifest on the host (the agent's, k8s-sync's) are kept."""
    for other in paths.MANIFESTS:
        try:
            found = load(other)
        except InputError:
            return  # a damaged manifest: keep every backup
        if found is not None:
            keep = keep | found.referenced_backups()
    try:
        names = os.listdir(_at(paths.BACKUP_DIR))
    except OSError:
        return
    for name in names:
        if name not in keep:
            fsutil.remove_file(os.path.join(_at(paths.BACKUP_DIR), name))


def _run_dir() -> None:
    """/run/hostagent, root's own and 0700; anything else there is refused, not used."""
    try:
        os.mkdir(_at(paths.RUN_DIR), 0o700)
    except FileExistsError:
        pass
    st = os.lstat(_at(paths.RUN_DIR))
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise InputError(f"{paths.RUN_DIR} is not a directory that only root can write; remove it and re-run")


@contextmanager
def locked(timeout: float = 30.0) -> Iterator[None]:
    """Serialize concurrent hostagent runs on this host; a held lock names its holder."""
    _run_dir()
    try:
        fd = os.open(_at(paths.LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise InputError(f"cannot open {paths.LOCK_FILE}: {e.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise InputError(f"another hostagent run (pid {holder}) holds {paths.LOCK_FILE}; "
                                     "try again when it ends") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        for directory in paths.WRITTEN_DIRS:
            fsutil.remove_stale_temps(_at(directory))
        yield
    finally:
        os.close(fd)
