"""File writes for a root process that must never write through a symlink it did not create.

Every write opens the parent directory with O_NOFOLLOW, creates a temp file next to the target with
O_EXCL|O_NOFOLLOW, sets owner and mode on the fd, then renames over the target. A symlink planted at
the target is refused, not followed.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import stat
from typing import Iterable, Optional

from hostagent import faults, host
from hostagent.errors import SymlinkRefused
from hostagent.facts.files import FileState, is_symlink, open_nofollow

TEMP_MARK = ".hostagent-"
STALE_TEMP = re.compile(r"\..+\.hostagent-[0-9a-f]{16}")


def remove_stale_temps(directory: str) -> list[str]:
    """Temp files that a killed run left in directory (root's own, by their name); returns them."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not STALE_TEMP.fullmatch(name):
            continue
        path = os.path.join(directory, name)
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            os.unlink(path)
            removed.append(path)
        elif stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            shutil.rmtree(path)
            removed.append(path)
    return removed


def fsync_dir(path: str) -> None:
    fd = _open_dir(path)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystems(dirs: Iterable[str]) -> None:
    """syncfs(2) each filesystem holding one of dirs, once: what useradd or systemctl wrote there
    without flushing (shadow-utils renames its files without an fsync of /etc) reaches the disk."""
    libc = ctypes.CDLL(None, use_errno=True)
    seen = set()
    for path in dirs:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue  # absent: nothing there to flush
        try:
            dev = os.fstat(fd).st_dev
            if dev not in seen:
                seen.add(dev)
                if libc.syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
        finally:
            os.close(fd)


def refuse_symlink(path: str) -> None:
    if is_symlink(path):
        raise SymlinkRefused(f"{path} is a symlink; refusing to write through it")


def _open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SymlinkRefused(f"{path} is not a plain directory (symlink?); refusing to write into it") from e
        raise


def atomic_write(path: str, data: bytes, mode: int, uid: Optional[int] = None, gid: Optional[int] = None,
                 fault: str = "") -> None:
    """uid, gid: None keeps the writer's own (root's, in a real run). fault: a fault point between the
    write and its fsync (written, not yet flushed nor renamed)."""
    parent, name = os.path.split(path)
    refuse_symlink(path)
    dir_fd = _open_dir(parent)
    tmp = f".{name}{TEMP_MARK}{secrets.token_hex(8)}"  # unpredictable: no one can plant it first
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            if uid is not None and gid is not None:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fault:
                faults.point(fault)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)  # the rename itself survives a power loss
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.close(dir_fd)


def copy_file(src: str, dst: str, mode: int, uid: Optional[int], gid: Optional[int]) -> None:
    """Copy content (keeping mtime so a later size+mtime check sees it as current) via atomic_write."""
    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(src_fd)
        with os.fdopen(os.dup(src_fd), "rb") as f:
            data = f.read()
    finally:
        os.close(src_fd)
    atomic_write(dst, data, mode, uid, gid, fault=f"inside:copy:{dst}")
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def restore(state: FileState, path: str, data: Optional[bytes] = None) -> None:
    """Put a file back as file_state() captured it: content, owner, mode, mtime, capabilities."""
    atomic_write(path, data if data is not None else state.content, state.mode, state.uid, state.gid)
    if state.mtime_ns is not None:
        os.utime(path, ns=(state.mtime_ns, state.mtime_ns), follow_symlinks=False)
    if state.caps_hex:
        set_caps_raw(path, bytes.fromhex(state.caps_hex))


def set_caps_raw(path: str, raw: Optional[bytes]) -> None:
    """Write (or, with None, remove) the file-capability xattr through an fd."""
    fd = open_nofollow(path)
    xattr = host.current().caps_xattr
    try:
        if raw is not None:
            os.setxattr(fd, xattr, raw)
        else:
            try:
                os.removexattr(fd, xattr)
            except OSError as e:
                if e.errno != errno.ENODATA:  # already gone
                    raise
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


def hand_over_tree(path: str, uid: Optional[int], gid: Optional[int]) -> None:
    """What uid (gid) owns in the tree, the top included, goes to root; modes stay. fd-relative and
    never through a symlink (fwalk, follow_symlinks=False): an entry swapped for a link redirects nothing."""
    refuse_symlink(path)
    for _, dirs, files, dirfd in os.fwalk(path, follow_symlinks=False):
        for name in [".", *dirs, *files]:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            new_uid = 0 if uid is not None and st.st_uid == uid else -1
            new_gid = 0 if gid is not None and st.st_gid == gid else -1
            if (new_uid, new_gid) != (-1, -1):
                # chown of a file drops set-id bits; the agent's logs have none, so modes stay as they were.
                os.chown(name, new_uid, new_gid, dir_fd=dirfd, follow_symlinks=False)


def remove_tree(path: str) -> None:
    refuse_symlink(path)
    # rmtree works on directory fds and does not follow symlinks inside the tree.
    shutil.rmtree(path, ignore_errors=False)

