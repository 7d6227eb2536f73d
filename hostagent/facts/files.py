"""Facts about files, read without ever following a symlink hostagent did not create."""
from __future__ import annotations

import base64
import errno
import os
import stat
from typing import NamedTuple, Optional

from hostagent import caps
from hostagent.errors import InputError, SymlinkRefused


def lstat_or_none(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def is_symlink(path: str) -> bool:
    st = lstat_or_none(path)
    return st is not None and stat.S_ISLNK(st.st_mode)


def open_nofollow(path: str, flags: int = os.O_RDONLY) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SymlinkRefused(f"{path} is a symlink; refusing to touch it") from e
        raise


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


class FileState(NamedTuple):
    """What a file was before hostagent touched it, enough to put it back byte for byte."""

    content_b64: str
    mode: int
    uid: int
    gid: int
    caps_hex: Optional[str] = None
    mtime_ns: Optional[int] = None

    @property
    def content(self) -> bytes:
        return base64.b64decode(self.content_b64)

    def to_dict(self) -> dict[str, object]:
        return self._asdict()


def file_state(path: str, with_content: bool = True) -> Optional[FileState]:
    st = lstat_or_none(path)
    if st is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} exists and is not a regular file; refusing to replace it")
    raw_caps = caps.read_file_caps(path)
    content = base64.b64encode(read_nofollow(path) or b"").decode() if with_content else ""
    return FileState(content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     raw_caps.hex() if raw_caps else None, st.st_mtime_ns)
