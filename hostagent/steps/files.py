"""Files, directories, the agent binary and its file capabilities."""
from __future__ import annotations

import difflib
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import NoReturn, Optional

from hostagent import caps, faults, host
from hostagent.errors import StepError, SymlinkRefused
from hostagent.facts import accounts
from hostagent.facts.files import FileState, file_state, lstat_or_none, read_nofollow
from hostagent.facts.packages import owning_package
from hostagent.host import fs as fsutil
from hostagent.host import paths
from hostagent.render.dropin import MARK
from hostagent.steps.base import Record, Step

SAVE_SUFFIX = ".hostagent-save"


def _missing(what: str, name: str) -> NoReturn:
    raise StepError(f"{what} {name} does not exist")


def _ids(owner: str, group: str) -> tuple[int, int]:
    uid, gid = accounts.ids(owner, group)
    if uid is None:
        _missing("user", owner)
    if gid is None:
        _missing("group", group)
    return uid, gid


def _owner_mode_ok(st: os.stat_result, mode: int, owner: str, group: str) -> bool:
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, *accounts.ids(owner, group))


@dataclass
class Directory(Step):
    """A directory with owner and mode. purge: on revert remove it with its content (log dirs)."""

    kind = "dir"
    path: str
    mode: int
    owner: str
    group: str
    purge: bool = False

    @property
    def holds_data(self) -> bool:  # type: ignore[override]
        return self.purge

    @property
    def title(self) -> str:
        return f"directory {self.path} ({self.owner}:{self.group} {self.mode:04o})"

    def check(self) -> bool:
        st = lstat_or_none(self.path)
        return st is not None and stat.S_ISDIR(st.st_mode) and _owner_mode_ok(st, self.mode, self.owner, self.group)

    def diff(self) -> str:
        return f"+ {self.title}"

    def snapshot(self) -> Record:
        st = lstat_or_none(self.path)
        if st is None:
            return {"created": True}
        if not stat.S_ISDIR(st.st_mode):
            raise StepError(f"{self.path} exists and is not a directory")
        return {"created": False, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}

    def apply(self, record: Record) -> None:
        uid, gid = _ids(self.owner, self.group)
        if lstat_or_none(self.path) is None:
            fsutil.make_dir(self.path, self.mode, uid, gid)
        else:
            fsutil.set_owner_mode(self.path, self.mode, uid, gid, directory=True)

    def revert(self, record: Record) -> Optional[str]:
        if lstat_or_none(self.path) is None:
            return None
        if record.get("created"):
            if self.purge:
                fsutil.remove_tree(self.path)
            else:
                left = sorted(os.listdir(self.path))
                if left:  # not ours to delete (an admin's file, a kept .hostagent-save): leave it all
                    return f"left {self.path} in place: it holds {', '.join(left)}, which hostagent did not put there"
                os.rmdir(self.path)
        else:
            fsutil.set_owner_mode(self.path, record["mode"], record["uid"], record["gid"], directory=True)
        return None

    def keep(self, record: Record) -> Optional[str]:
        """Kept logs go to root before the user is deleted: a later account given the same uid would own them."""
        if lstat_or_none(self.path) is None:
            return None
        account = accounts.user(self.owner) if self.owner != "root" else None
        gid = accounts.group_gid(self.group) if self.group != "root" else None
        fsutil.hand_over_tree(self.path, account.uid if account else None, gid)
        return (f"kept {self.path}: what {self.owner}:{self.group} owned there now belongs to root:root (modes "
                f"unchanged), as {self.owner} is removed")


@dataclass
class File(Step):
    """A small text file with exact content, owner and mode (config, unit). Prior content is kept in
    the manifest and restored byte for byte."""

    kind = "file"
    path: str
    content: str
    mode: int
    owner: str
    group: str
    secret: bool = False  # credentials (a kubeconfig): diffs show size and sha256, never the text

    @property
    def data(self) -> bytes:
        return self.content.encode()

    @property
    def title(self) -> str:
        return f"file {self.path} ({self.owner}:{self.group} {self.mode:04o})"

    def check(self) -> bool:
        st = lstat_or_none(self.path)
        if st is None or not stat.S_ISREG(st.st_mode) or not _owner_mode_ok(st, self.mode, self.owner, self.group):
            return False
        return read_nofollow(self.path) == self.data

    def diff(self) -> Optional[str]:
        try:
            old = read_nofollow(self.path) or b""
        except SymlinkRefused as e:
            return str(e)
        if self.secret:
            if old == self.data:
                return f"owner/mode of {self.path} → {self.owner}:{self.group} {self.mode:04o}"
            now = f"- {self.path} (now): {secret_summary(old)}\n" if old else ""
            return now + f"+ {self.path} (hostagent): {secret_summary(self.data)}\n"
        lines = difflib.unified_diff(
            old.decode(errors="replace").splitlines(keepends=True), self.content.splitlines(keepends=True),
            fromfile=f"{self.path} (now)", tofile=f"{self.path} (hostagent)")
        text = "".join(lines)
        return text or f"owner/mode of {self.path} → {self.owner}:{self.group} {self.mode:04o}"

    def _changed(self) -> None:
        """After a write or a revert (a service definition tells its manager)."""

    def snapshot(self) -> Record:
        before = file_state(self.path)
        return {"before": before.to_dict() if before else None}

    def apply(self, record: Record) -> None:
        uid, gid = _ids(self.owner, self.group)
        fsutil.atomic_write(self.path, self.data, self.mode, uid, gid)
        faults.point(f"inside:{self.id}")
        self._changed()

    def revert(self, record: Record) -> Optional[str]:
        before = FileState(**record["before"]) if record.get("before") else None
        now = read_nofollow(self.path)
        note = None
        if now is not None and now != self.data and (before is None or now != before.content):
            # Edited since install (like a dpkg conffile): keep the admin's version beside it.
            saved = self.path + SAVE_SUFFIX
            st = os.lstat(self.path)
            fsutil.atomic_write(saved, now, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            note = f"{self.path} was edited since install; kept it as {saved}"
        if before is None:
            fsutil.remove_file(self.path)
        elif not _same_file(self.path, before, now):
            fsutil.restore(before, self.path)
        self._changed()
        return note

    def drift(self) -> list[str]:
        return [] if self.check() else [f"{self.path} differs from what hostagent installed"]


@dataclass
class ServiceDefinition(File):
    """A service's unit or init script: its manager reads it again after each change."""

    kind = "service-definition"

    def _changed(self) -> None:
        host.current().services.reload()

    def hand_over(self, record: Record) -> Optional[str]:
        now = read_nofollow(self.path)
        if now is not None and now != self.data and not now.startswith(MARK.encode()):
            return None  # the package's own unit is back (an upgrade of it): it stays as the package has it
        return self.revert(record)  # hostagent's full unit: the package's, from the record, goes back


def secret_summary(data: bytes) -> str:
    return f"(secret, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})"


def _same_file(path: str, state: FileState, now: Optional[bytes]) -> bool:
    """Already as it was (a crash or failure came before the write): nothing to put back."""
    st = lstat_or_none(path)
    return (st is not None and now == state.content
            and (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == (state.mode, state.uid, state.gid, state.mtime_ns))


def _file_signature(path: str) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_size, st.st_mtime_ns


@dataclass
class Binary(Step):
    """The agent binary at its fixed path: copied from source (unless it is already there), owned
    root:<group>, mode 0750 so only the agent's group can run it. Capabilities are a separate,
    later step because chown clears them."""

    kind = "binary"
    path: str
    source: str
    group: str
    # In a dir the agent's user may write: the agent upgrades itself there (the server's upgrade).
    upgradable: bool = False

    @property
    def title(self) -> str:
        src = "" if self.source == self.path else f" from {self.source}"
        return f"agent binary {self.path}{src} (root:{self.group} 0750)"

    def _content_current(self) -> bool:
        if self.source == self.path:
            return True
        # Copies keep the source's mtime, so size+mtime identify a current copy without hashing.
        here = _file_signature(self.path)
        if self.upgradable and lstat_or_none(self.source) is None:
            return True  # the source went (a package removed): the agent runs what is here
        there = _file_signature(self.source)
        # The agent's own upgrade is newer than what was installed: not drift, and a re-run keeps it
        # (a newer --agent-binary still replaces it).
        return here == there or (self.upgradable and here[1] > there[1])

    def check(self) -> bool:
        st = lstat_or_none(self.path)
        return (st is not None and stat.S_ISREG(st.st_mode) and self._content_current()
                and _owner_mode_ok(st, 0o750, "root", self.group))

    def diff(self) -> str:
        return f"+ {self.title}"

    def keep_first(self, first: Record, now: Record) -> Record:
        # A re-run that copies a newer build: the host's original stays the one to restore, but the
        # binary now in place is still hostagent's (not "replaced since install").
        return {**first, "installed": now["installed"]}

    def replaced(self, record: Record) -> bool:
        """Replaced since install by something else (a package upgrade, the agent's own upgrade)."""
        st = lstat_or_none(self.path)
        return bool(record.get("installed")) and st is not None and [st.st_size, st.st_mtime_ns] != record["installed"]

    def restored_at_start(self, record: Record) -> bool:
        # A replaced binary's owner, mode and capabilities are the replacer's until the launcher
        # restores them at the agent's next start (and its content is the newer one): not drift.
        return self.replaced(record)

    def notes(self, record: Record) -> list[str]:
        if not self.replaced(record):
            return []
        shown = host.current().logical(self.path)
        package = owning_package(shown)
        what = f"DeepFlow's package ({package}) replaced {shown} since install (a package upgrade)" if package else \
            f"{shown} was replaced since install (an upgrade)"
        return [f"{what}: its owner, mode and capabilities are restored at each start of the agent"]

    def _copying(self) -> bool:
        return self.source != self.path and not (lstat_or_none(self.path) is not None and self._content_current())

    def snapshot(self) -> Record:
        before = file_state(self.path, with_content=False)
        record: Record = {"before": before.to_dict() if before else None, "backup": None,
                          "installed": list(_file_signature(self.source))}
        if self._copying() and before is not None:
            # Keep the binary we replace (e.g. a package's) to put it back on uninstall.
            record["backup"] = _backup(self.path)
        return record

    def apply(self, record: Record) -> None:
        uid, gid = _ids("root", self.group)
        if self._copying():
            fsutil.copy_file(self.source, self.path, 0o750, uid, gid)
        else:
            fsutil.set_owner_mode(self.path, 0o750, uid, gid)

    def revert(self, record: Record) -> Optional[str]:
        before = record.get("before")
        if before is None:
            # An agent that upgraded itself here goes too: what root would run after uninstall is never
            # a file the agent's user wrote (the server upgrades the restored agent again if it should).
            fsutil.remove_file(self.path)
            return None
        state = FileState(**before)
        backup = record.get("backup")
        now = lstat_or_none(self.path)
        note = None
        if now is not None:
            ours = [now.st_size, now.st_mtime_ns] == record.get("installed")
            if ours and backup and os.path.exists(backup):
                with open(backup, "rb") as f:
                    fsutil.restore(state, self.path, f.read())
            else:
                # The original (a crash came before the copy) or replaced since install (a package
                # upgrade): its content stays; owner, mode and capabilities go back.
                fsutil.set_owner_mode(self.path, state.mode, state.uid, state.gid)
                fsutil.set_caps_raw(self.path, bytes.fromhex(state.caps_hex) if state.caps_hex else None)
                if backup and now.st_mtime_ns != state.mtime_ns:
                    note = f"{self.path} was replaced since install (a package upgrade?); left the new one in place"
        if backup and os.path.exists(backup):
            os.unlink(backup)
        return note


def _backup(path: str) -> str:
    data = read_nofollow(path) or b""
    backups = host.current().path(paths.BACKUP_DIR)
    os.makedirs(backups, mode=0o700, exist_ok=True)
    target = os.path.join(backups, hashlib.sha256(data).hexdigest())
    fsutil.atomic_write(target, data, 0o600)
    return target


@dataclass
class FileCaps(Step):
    """File capabilities (=eip) on the agent binary, set last and read back."""

    kind = "caps"
    path: str
    caps: list[str]

    @property
    def title(self) -> str:
        return f"file capabilities {','.join(self.caps)}=eip on {self.path}"

    def _now(self) -> str:
        try:
            return caps.describe_file_caps(caps.read_file_caps(self.path)) or "none"
        except FileNotFoundError:
            return "missing file"

    def check(self) -> bool:
        try:
            return caps.file_caps_match(caps.read_file_caps(self.path), self.caps)
        except FileNotFoundError:
            return False

    def diff(self) -> str:
        return f"- caps: {self._now()}\n+ caps: {','.join(self.caps)}=eip"

    def drift(self) -> list[str]:
        if self.check():
            return []
        return [f"file capabilities on {self.path} are {self._now()}, want {','.join(self.caps)}=eip"]

    def snapshot(self) -> Record:
        prior = caps.read_file_caps(self.path)
        return {"caps_hex": prior.hex() if prior else None}

    def apply(self, record: Record) -> None:
        fsutil.set_caps_raw(self.path, caps.encode_file_caps(self.caps))
        written = caps.read_file_caps(self.path)
        if not caps.file_caps_match(written, self.caps):
            raise StepError(f"file capabilities on {self.path} did not stick (read back: {caps.describe_file_caps(written) or 'none'})")

    def revert(self, record: Record) -> Optional[str]:
        if lstat_or_none(self.path) is not None:
            fsutil.set_caps_raw(self.path, bytes.fromhex(record["caps_hex"]) if record.get("caps_hex") else None)
        return None
