"""The manifest: what install applied, in order, with what was there before. Written atomically
after every step so an interrupted run can still be undone."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from contextlib import contextmanager
from typing import Iterator, Optional

from hostagent import fsutil, paths
from hostagent.errors import InputError

VERSION = 1


def load(path: str = paths.MANIFEST) -> Optional[dict]:
    data = fsutil.read_nofollow(path)
    if data is None:
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        raise InputError(f"{path} is not valid JSON; refusing to guess what was installed") from None
    if manifest.get("version") != VERSION:
        raise InputError(f"{path} has manifest version {manifest.get('version')}, this hostagent reads {VERSION}")
    return manifest


def save(manifest: dict, path: str = paths.MANIFEST) -> None:
    manifest["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = json.dumps(manifest, indent=2, sort_keys=False).encode() + b"\n"
    fsutil.atomic_write(path, data, 0o600)


def ensure_state_dir() -> bool:
    """Create the state dir; True if this call created it (uninstall then removes it)."""
    fsutil.refuse_symlink(paths.STATE_DIR)
    try:
        os.mkdir(paths.STATE_DIR, 0o700)
        return True
    except FileExistsError:
        return False


def remove(manifest: dict, path: str = paths.MANIFEST) -> None:
    fsutil.remove_file(path)
    if os.path.isdir(paths.BACKUP_DIR) and not os.listdir(paths.BACKUP_DIR):
        os.rmdir(paths.BACKUP_DIR)
    if manifest.get("state_dir_created"):
        try:
            os.rmdir(paths.STATE_DIR)
        except OSError:
            pass  # something else lives there now; leave it


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
