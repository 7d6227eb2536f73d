"""Append a directory tree to the runstub: the single file's bundle format (see stub/runstub.c).

    python3 pack.py STUB DIR OUT

Entries in sorted order, no owners and no times, so the same tree gives the same bytes.
"""
from __future__ import annotations

import hashlib
import os
import stat
import struct
import sys
import zlib
from pathlib import Path

MAGIC = b"HOSTAGENT-RUN-1\n"


def entries(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                yield b"l", 0o777, rel, os.readlink(path).encode()
            elif stat.S_ISDIR(st.st_mode):
                yield b"d", 0o755, rel, None
            elif stat.S_ISREG(st.st_mode):
                yield b"f", 0o755 if st.st_mode & 0o111 else 0o644, rel, path
            else:
                raise ValueError(f"cannot pack {path}: not a file, dir or symlink")


def bundle(root: Path) -> bytes:
    z = zlib.compressobj(9)
    out = []
    for kind, mode, rel, extra in entries(root):
        name = rel.encode()
        out.append(z.compress(kind + struct.pack("<HH", mode, len(name)) + name))
        if kind == b"l":
            out.append(z.compress(struct.pack("<H", len(extra)) + extra))
        elif kind == b"f":
            data = extra.read_bytes()
            out.append(z.compress(struct.pack("<Q", len(data)) + data))
    out.append(z.compress(b"E"))
    out.append(z.flush())
    return b"".join(out)


def pack(stub: Path, root: Path, out: Path) -> str:
    head = stub.read_bytes()
    payload = bundle(root)
    digest = hashlib.sha256(payload).hexdigest()
    trailer = MAGIC + struct.pack("<QQ", len(head), len(payload)) + digest.encode()
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(head + payload + trailer)
    tmp.chmod(0o755)
    tmp.rename(out)
    return digest


if __name__ == "__main__":
    print(pack(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
