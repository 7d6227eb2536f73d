"""Files, directories, the agent binary and its file capabilities."""
from __future__ import annotations

import base64
import difflib
import hashlib
import os
import stat
from typing import Optional

from hostagent import caps, facts, fsutil, paths
from hostagent.errors import StepError
from hostagent.steps import Step, run


def _ids(owner: str, group: str) -> tuple[int, int]:
    uid = 0 if owner == "root" else (facts.user(owner) or _missing("user", owner)).uid
    gid = 0 if group == "root" else facts.group_gid(group)
    if gid is None:
        _missing("group", group)
    return uid, gid  # type: ignore[return-value]


def _missing(what: str, name: str):
    raise StepError(f"{what} {name} does not exist")


def _owner_mode_ok(st: os.stat_result, mode: int, owner: str, group: str) -> bool:
    uid = 0 if owner == "root" else getattr(facts.user(owner), "uid", None)
    gid = 0 if group == "root" else facts.group_gid(group)
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid)


class Directory(Step):
    """A directory with owner and mode. purge: on revert remove it with its content (log dirs)."""

    kind = "dir"

    @property
    def title(self) -> str:
        p = self.params
        return f"directory {p['path']} ({p['owner']}:{p['group']} {p['mode']:04o})"

    def check(self) -> bool:
        st = fsutil.lstat_or_none(self.params["path"])
        return st is not None and stat.S_ISDIR(st.st_mode) and _owner_mode_ok(
            st, self.params["mode"], self.params["owner"], self.params["group"])

    def diff(self) -> str:
        return f"+ {self.title}"

    def apply(self) -> dict:
        p = self.params
        uid, gid = _ids(p["owner"], p["group"])
        st = fsutil.lstat_or_none(p["path"])
        if st is None:
            fsutil.make_dir(p["path"], p["mode"], uid, gid)
            return {"created": True}
        if not stat.S_ISDIR(st.st_mode):
            raise StepError(f"{p['path']} exists and is not a directory")
        fsutil.set_owner_mode(p["path"], p["mode"], uid, gid, directory=True)
        return {"created": False, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}

    def revert(self, record: dict) -> None:
        path = self.params["path"]
        if fsutil.lstat_or_none(path) is None:
            return
        if record.get("created"):
            if self.params.get("purge") and not self.params.get("keep"):
                fsutil.remove_tree(path)
            else:
                try:
                    os.rmdir(path)
                except OSError as e:
                    raise StepError(f"cannot remove {path}: {e.strerror} (it holds files hostagent did not put there)") from None
        else:
            fsutil.set_owner_mode(path, record["mode"], record["uid"], record["gid"], directory=True)


class File(Step):
    """A small file with exact content, owner and mode (config, unit). Prior content is kept in the
    manifest and restored byte for byte."""

    kind = "file"

    @property
    def content(self) -> bytes:
        return base64.b64decode(self.params["content_b64"])

    @property
    def title(self) -> str:
        p = self.params
        return f"file {p['path']} ({p['owner']}:{p['group']} {p['mode']:04o})"

    def check(self) -> bool:
        p = self.params
        st = fsutil.lstat_or_none(p["path"])
        if st is None or not stat.S_ISREG(st.st_mode) or not _owner_mode_ok(st, p["mode"], p["owner"], p["group"]):
            return False
        return fsutil.read_nofollow(p["path"]) == self.content

    def diff(self) -> Optional[str]:
        try:
            old = fsutil.read_nofollow(self.params["path"]) or b""
        except fsutil.SymlinkRefused as e:
            return str(e)
        lines = difflib.unified_diff(
            old.decode(errors="replace").splitlines(keepends=True),
            self.content.decode(errors="replace").splitlines(keepends=True),
            fromfile=f"{self.params['path']} (now)", tofile=f"{self.params['path']} (hostagent)")
        text = "".join(lines)
        return text or f"owner/mode of {self.params['path']} → {self.params['owner']}:{self.params['group']} {self.params['mode']:04o}"

    def _reload(self) -> None:
        if self.params.get("reload_systemd"):
            run(["systemctl", "daemon-reload"])

    def apply(self) -> dict:
        p = self.params
        before = fsutil.FileState.capture(p["path"])
        uid, gid = _ids(p["owner"], p["group"])
        fsutil.atomic_write(p["path"], self.content, p["mode"], uid, gid)
        self._reload()
        return {"before": before.to_dict() if before else None}

    def revert(self, record: dict) -> None:
        before = record.get("before")
        if before is None:
            fsutil.remove_file(self.params["path"])
        else:
            fsutil.FileState(**before).restore(self.params["path"])
        self._reload()

    def drift(self) -> list[str]:
        if self.check():
            return []
        return [f"{self.params['path']} differs from what hostagent installed"]


def _file_signature(path: str) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_size, st.st_mtime_ns


class Binary(Step):
    """The agent binary at its fixed path: copied from source (unless it is already there), owned
    root:<group>, mode 0750 so only the agent's group can run it. Capabilities are a separate,
    later step because chown clears them."""

    kind = "binary"

    @property
    def title(self) -> str:
        p = self.params
        src = "" if p["source"] == p["path"] else f" from {p['source']}"
        return f"agent binary {p['path']}{src} (root:{p['group']} 0750)"

    def _content_current(self) -> bool:
        p = self.params
        if p["source"] == p["path"]:
            return True
        # Copies keep the source's mtime, so size+mtime identify a current copy without hashing.
        return _file_signature(p["source"]) == _file_signature(p["path"])

    def check(self) -> bool:
        st = fsutil.lstat_or_none(self.params["path"])
        return (st is not None and stat.S_ISREG(st.st_mode) and self._content_current()
                and _owner_mode_ok(st, 0o750, "root", self.params["group"]))

    def diff(self) -> str:
        return f"+ {self.title}"

    def apply(self) -> dict:
        p = self.params
        copying = p["source"] != p["path"] and not (
            fsutil.lstat_or_none(p["path"]) is not None and self._content_current())
        before = fsutil.FileState.capture(p["path"], with_content=False)
        record: dict = {"before": before.to_dict() if before else None, "backup": None}
        _, gid = _ids("root", p["group"])
        if copying:
            if before is not None:
                # Keep the binary we replace (e.g. a package's) to put it back on uninstall.
                record["backup"] = _backup(p["path"])
            fsutil.copy_file(p["source"], p["path"], 0o750, 0, gid)
        else:
            fsutil.set_owner_mode(p["path"], 0o750, 0, gid)
        return record

    def revert(self, record: dict) -> None:
        path = self.params["path"]
        before = record.get("before")
        if before is None:
            fsutil.remove_file(path)
            return
        state = fsutil.FileState(**before)
        if record.get("backup"):
            with open(record["backup"], "rb") as f:
                state.restore(path, f.read())
            os.unlink(record["backup"])
        else:
            fsutil.set_owner_mode(path, state.mode, state.uid, state.gid)
            if state.caps_hex:
                fd = fsutil.open_nofollow(path)
                try:
                    os.setxattr(fd, caps.XATTR, bytes.fromhex(state.caps_hex))
                finally:
                    os.close(fd)


def _backup(path: str) -> str:
    data = fsutil.read_nofollow(path) or b""
    os.makedirs(paths.BACKUP_DIR, mode=0o700, exist_ok=True)
    target = os.path.join(paths.BACKUP_DIR, hashlib.sha256(data).hexdigest())
    fsutil.atomic_write(target, data, 0o600)
    return target


class FileCaps(Step):
    """File capabilities (=eip) on the agent binary, set last and read back."""

    kind = "caps"

    @property
    def title(self) -> str:
        return f"file capabilities {','.join(self.params['caps'])}=eip on {self.params['path']}"

    def check(self) -> bool:
        try:
            return caps.file_caps_match(caps.read_file_caps(self.params["path"]), self.params["caps"])
        except FileNotFoundError:
            return False

    def diff(self) -> str:
        try:
            now = caps.describe_file_caps(caps.read_file_caps(self.params["path"])) or "none"
        except FileNotFoundError:
            now = "none"
        return f"- caps: {now}\n+ caps: {','.join(self.params['caps'])}=eip"

    def drift(self) -> list[str]:
        if self.check():
            return []
        try:
            now = caps.describe_file_caps(caps.read_file_caps(self.params["path"])) or "none"
        except FileNotFoundError:
            now = "missing file"
        return [f"file capabilities on {self.params['path']} are {now}, want {','.join(self.params['caps'])}=eip"]

    def apply(self) -> dict:
        path = self.params["path"]
        prior = caps.read_file_caps(path)
        fd = fsutil.open_nofollow(path)
        try:
            caps.write_file_caps(fd, self.params["caps"])
        finally:
            os.close(fd)
        written = caps.read_file_caps(path)
        if not caps.file_caps_match(written, self.params["caps"]):
            raise StepError(f"file capabilities on {path} did not stick (read back: {caps.describe_file_caps(written) or 'none'})")
        return {"caps_hex": prior.hex() if prior else None}

    def revert(self, record: dict) -> None:
        path = self.params["path"]
        if fsutil.lstat_or_none(path) is None:
            return
        fd = fsutil.open_nofollow(path)
        try:
            if record.get("caps_hex"):
                os.setxattr(fd, caps.XATTR, bytes.fromhex(record["caps_hex"]))
            else:
                try:
                    os.removexattr(fd, caps.XATTR)
                except OSError as e:
                    if e.errno != 61:  # ENODATA: already gone
                        raise
        finally:
            os.close(fd)
