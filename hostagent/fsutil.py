"""File operations for a root process that must never write through a symlink it did not create.

Every write opens the parent directory with O_NOFOLLOW, creates a temp file next to the target with
O_EXCL|O_NOFOLLOW, sets owner and mode on the fd, then renames over the target. A symlink planted at
the target is refused, not followed.
"""
from __future__ import annotations

import base64
import errno
import os
import shutil
import stat
from dataclasses import dataclass
from typing import Optional

from hostagent.errors import InputError, StepError


class SymlinkRefused(StepError):
    pass


def lstat_or_none(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def refuse_symlink(path: str) -> None:
    st = lstat_or_none(path)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise SymlinkRefused(f"{path} is a symlink; refusing to write through it")


def _open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SymlinkRefused(f"{path} is not a plain directory (symlink?); refusing to write into it") from e
        raise


def atomic_write(path: str, data: bytes, mode: int, uid: int = 0, gid: int = 0) -> None:
    parent, name = os.path.split(path)
    refuse_symlink(path)
    dir_fd = _open_dir(parent)
    tmp = f".{name}.hostagent-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.close(dir_fd)


def copy_file(src: str, dst: str, mode: int, uid: int, gid: int) -> None:
    """Copy content (keeping mtime so a later size+mtime check sees it as current) via atomic_write."""
    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(src_fd)
        with os.fdopen(os.dup(src_fd), "rb") as f:
            data = f.read()
    finally:
        os.close(src_fd)
    atomic_write(dst, data, mode, uid, gid)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def read_nofollow(path: str) -> Optional[bytes]:
    """File content, None when absent; a symlink is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SymlinkRefused(f"{path} is a symlink; refusing to read through it") from e
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()


def open_nofollow(path: str, flags: int = os.O_RDONLY) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SymlinkRefused(f"{path} is a symlink; refusing to touch it") from e
        raise


@dataclass(frozen=True)
class FileState:
    """What a file was before we touched it, enough to put it back byte for byte."""

    content_b64: str
    mode: int
    uid: int
    gid: int
    caps_hex: Optional[str] = None
    mtime_ns: Optional[int] = None

    @classmethod
    def capture(cls, path: str, with_content: bool = True) -> Optional["FileState"]:
        st = lstat_or_none(path)
        if st is None:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path} exists and is not a regular file; refusing to replace it")
        from hostagent.caps import read_file_caps

        caps = read_file_caps(path)
        content = base64.b64encode(read_nofollow(path) or b"").decode() if with_content else ""
        return cls(content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, caps.hex() if caps else None,
                   st.st_mtime_ns)

    def to_dict(self) -> dict:
        return {"content_b64": self.content_b64, "mode": self.mode, "uid": self.uid, "gid": self.gid,
                "caps_hex": self.caps_hex, "mtime_ns": self.mtime_ns}

    def restore(self, path: str, data: Optional[bytes] = None) -> None:
        content = data if data is not None else base64.b64decode(self.content_b64)
        atomic_write(path, content, self.mode, self.uid, self.gid)
        if self.mtime_ns is not None:
            os.utime(path, ns=(self.mtime_ns, self.mtime_ns), follow_symlinks=False)
        if self.caps_hex:
            fd = open_nofollow(path)
            try:
                os.setxattr(fd, "security.capability", bytes.fromhex(self.caps_hex))
            finally:
                os.close(fd)


def remove_file(path: str) -> None:
    refuse_symlink(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def make_dir(path: str, mode: int, uid: int, gid: int) -> None:
    refuse_symlink(path)
    os.mkdir(path, mode)
    fd = _open_dir(path)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def set_owner_mode(path: str, mode: int, uid: int, gid: int, directory: bool = False) -> None:
    fd = _open_dir(path) if directory else open_nofollow(path)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    refuse_symlink(path)
    # rmtree works on directory fds and does not follow symlinks inside the tree.
    shutil.rmtree(path, ignore_errors=False)
