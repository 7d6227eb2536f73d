"""The entries to report and their version.

Each object is trimmed, serialized (compact JSON), zlib-compressed and encoded as its
KubernetesAPIInfo once, when it arrives; the store keeps only those bytes, by uid, per type, as the
real agent does (resource_watcher.rs keeps the compressed entry per uid). A full report is then one
join. An object whose trimmed form did not change (a status heartbeat, a resourceVersion bump) is
not a change.

Version: unix seconds when the store is made (the version of the first report); +1 for each report
that carries changes since the previous one (the real agent bumps once per sync tick that saw
updates). Apiserver failures never change it: the last good version and entries go out with the error."""
from __future__ import annotations

import json
import threading
import time
import zlib
from typing import Iterable, Optional

from hostagent.k8ssync import proto
from hostagent.k8ssync.resources import VERSION_INFO, Obj, Resource, version_info


def compress(obj: Obj) -> bytes:
    return zlib.compress(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode(), 6)


def encode(resource: Resource, obj: Obj) -> bytes:
    return proto.entry(resource.type_name, compress(resource.trimmed(obj)))


class Snapshot:
    def __init__(self, version: int, entries: list[bytes], optional: list[bytes], error_msg: str, counts: dict[str, int]):
        self.version = version
        self.entries = entries  # required types, *version.Info first
        self.optional = optional  # ConfigMaps: dropped first when over the size limit
        self.error_msg = error_msg
        self.counts = counts
        self.notes: dict[str, str] = {}  # said once: put back if this report is not sent


class Store:
    def __init__(self, resources: Iterable[Resource], version: Optional[int] = None) -> None:
        self.resources = {r.name: r for r in resources}
        self.version = int(time.time()) if version is None else version
        self._objects: dict[str, dict[str, bytes]] = {name: {} for name in self.resources}
        self._relist: dict[str, set[str]] = {}
        self._version_entry: Optional[bytes] = None
        self.errors: dict[str, str] = {}
        self.notes: dict[str, str] = {}  # said once, in the next report's error_msg
        self.reported_errors = ""
        self.listed: set[str] = set()
        self.cond = threading.Condition()
        self.pending_since: Optional[float] = None  # monotonic time of the first unreported change
        self.last_change: float = 0.0
        self.sent_once = False
        self.errors_changed = 0.0

    def _changed(self) -> None:
        now = time.monotonic()
        if self.pending_since is None:
            self.pending_since = now
        self.last_change = now
        self.cond.notify_all()

    def set_version_info(self, raw: Obj) -> None:
        entry = proto.entry(VERSION_INFO, compress(version_info(raw)))
        with self.cond:
            if entry != self._version_entry:
                if self._version_entry is not None:
                    self._changed()
                self._version_entry = entry

    @property
    def has_version_info(self) -> bool:
        return self._version_entry is not None

    def upsert(self, name: str, obj: Obj) -> bool:
        uid = (obj.get("metadata") or {}).get("uid")
        if not uid:
            return False  # the real agent skips objects without a uid too
        entry = encode(self.resources[name], obj)
        with self.cond:
            seen = self._relist.get(name)
            if seen is not None:
                seen.add(uid)
            objects = self._objects[name]
            if objects.get(uid) == entry:
                return False
            objects[uid] = entry
            if self.sent_once or name in self.listed:
                self._changed()
            return True

    def delete(self, name: str, obj: Obj) -> bool:
        uid = (obj.get("metadata") or {}).get("uid")
        with self.cond:
            if uid and self._objects[name].pop(uid, None) is not None:
                self._changed()
                return True
            return False

    def begin_list(self, name: str) -> None:
        with self.cond:
            self._relist[name] = set()

    def end_list(self, name: str) -> None:
        """A complete list arrived: objects it did not hold are gone."""
        with self.cond:
            seen = self._relist.pop(name, None)
            objects = self._objects[name]
            gone = [uid for uid in objects if uid not in seen] if seen is not None else []
            for uid in gone:
                del objects[uid]
            if gone:
                self._changed()
            self.listed.add(name)
            self.errors.pop(name, None)
            self.cond.notify_all()

    def abort_list(self, name: str) -> None:
        with self.cond:
            self._relist.pop(name, None)

    def set_error(self, name: str, message: Optional[str]) -> None:
        with self.cond:
            before = self.errors.get(name)
            if message is None:
                self.errors.pop(name, None)
            else:
                self.errors[name] = message
            if before != message:
                self.errors_changed = time.monotonic()
                self.cond.notify_all()

    def note(self, name: str, message: str) -> None:
        with self.cond:
            self.notes[name] = message
            self.errors_changed = time.monotonic()
            self.cond.notify_all()

    def error_text(self) -> str:
        """error_msg: each type's failure now, and what happened since the last report."""
        with self.cond:
            return ";".join(f"{n}: {m}" for n, m in sorted(self.errors.items()) + sorted(self.notes.items()))

    def count(self, name: str) -> int:
        with self.cond:
            return len(self._objects[name])

    def snapshot(self) -> Snapshot:
        """What to send now; takes the pending changes (the version goes up by one if there were any)."""
        with self.cond:
            if self.pending_since is not None and self.sent_once:
                self.version += 1
            self.pending_since = None
            self.sent_once = True
            entries = [self._version_entry] if self._version_entry else []
            optional: list[bytes] = []
            counts = {}
            for name, objects in self._objects.items():
                counts[self.resources[name].type_name] = len(objects)
                (optional if self.resources[name].optional else entries).extend(objects.values())
            error_msg = self.error_text()
            snap = Snapshot(self.version, entries, optional, error_msg, counts)
            snap.notes, self.notes = self.notes, {}
            self.reported_errors = self.error_text()  # what a report is due for when it changes
            return snap

    def unsent(self, snap: Snapshot) -> None:
        """The report did not go out: its notes wait for the next one."""
        with self.cond:
            self.notes = {**snap.notes, **self.notes}
