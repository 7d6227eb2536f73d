"""k8s-sync's image: the single file alone on an empty base, as an OCI image layout in a tar (oci-archive).

Built by `bash packaging/build.sh --only oci` (packaging/build.py gives it the version and the build's date).

No shell, no package manager, no libraries: the single file carries its own loader and glibc. One layer:
/usr/local/bin/hostagent, /etc/passwd and /etc/group naming 65532 (runtimes set HOME from them; getpwuid
finds the user), /etc/nsswitch.conf (files before DNS, as distroless images), and an empty /tmp to mount
over. Run as 65532:65532 with `hostagent k8s-sync run` as entrypoint; as non-root the file unpacks under
TMPDIR (or its per-user cache, XDG_CACHE_HOME), both on /tmp, so a read-only root works when /tmp is a
writable volume (deploy/k8s-sync.yaml mounts an emptyDir there).

Reproducible: every time (tar entries, the config's `created`) is the build's epoch (build.py's
source_date_epoch: SOURCE_DATE_EPOCH, else the commit's date), entries sorted, owners 0:0 without names, gzip without name or time, JSON
with sorted keys. Writes OUT_DIR/hostagent-k8s-sync-V.oci.tar and OUT_DIR/hostagent-k8s-sync-V.oci.digest
(the image manifest's digest, what `image: NAME@sha256:...` pins after a push).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any, Optional

NAME = "localhost/hostagent-k8s-sync"  # the name loaders give it (ctr, podman, docker); deploy/k8s-sync.yaml uses it
BINARY = "/usr/local/bin/hostagent"
UID = GID = 65532  # distroless's "nonroot"
ENTRYPOINT = [BINARY, "k8s-sync", "run"]
ENV = ["PATH=/usr/local/bin", "TMPDIR=/tmp", "XDG_CACHE_HOME=/tmp/cache"]
PASSWD = f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{UID}:{GID}:nonroot:/tmp:/sbin/nologin\n"
GROUP = f"root:x:0:\nnonroot:x:{GID}:\n"
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def archive_name(ver: str) -> str:
    return f"hostagent-k8s-sync-{ver}.oci.tar"


def _tar(entries: list[tuple[str, int, Optional[bytes]]], epoch: int) -> bytes:
    """(path, mode, content or None for a directory), sorted, owned by 0:0, all at epoch."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, mode, data in sorted(entries):
            info = tarfile.TarInfo(path)
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = mode, epoch, 0, 0, "", ""
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data), **extra}


def layer(single: bytes, epoch: int) -> bytes:
    return _tar([("etc", 0o755, None), ("etc/passwd", 0o644, PASSWD.encode()), ("etc/group", 0o644, GROUP.encode()),
                 ("etc/nsswitch.conf", 0o644, NSSWITCH.encode()), ("tmp", 0o1777, None), ("usr", 0o755, None),
                 ("usr/local", 0o755, None), ("usr/local/bin", 0o755, None), (BINARY.lstrip("/"), 0o755, single)], epoch)


def build(single_file: Path, out_dir: Path, epoch: int, ver: str) -> Path:
    """Write the oci-archive and its .digest into out_dir; returns the archive's path."""
    if not single_file.is_file():
        raise SystemExit(f"oci: no single file at {single_file}: build it first (build.sh --only single)")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    raw = layer(single_file.read_bytes(), epoch)
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=6) as z:
        z.write(raw)
    blob = gz.getvalue()
    labels = {"org.opencontainers.image.title": "hostagent k8s-sync",
              "org.opencontainers.image.description": "Reports Kubernetes resources to deepflow-server (KubernetesAPISync)",
              "org.opencontainers.image.version": ver, "org.opencontainers.image.licenses": "Apache-2.0",
              "org.opencontainers.image.created": created}
    config = _json({
        "created": created, "architecture": "amd64", "os": "linux",
        "config": {"User": f"{UID}:{GID}", "Env": ENV, "Entrypoint": ENTRYPOINT, "WorkingDir": "/", "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]},
        "history": [{"created": created, "created_by": f"packaging/oci.py {single_file.name}"}],
    })
    manifest = _json({"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": _descriptor(MT_CONFIG, config),
                      "layers": [_descriptor(MT_LAYER, blob)], "annotations": {k: labels[k] for k in sorted(labels)
                                                                                if k.endswith(("version", "created"))}})
    ref = f"{NAME}:{ver}"
    # ref.name: podman, skopeo, docker; io.containerd.image.name: ctr/kind/k3s import without --base-name.
    index = _json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [_descriptor(
        MT_MANIFEST, manifest, platform={"architecture": "amd64", "os": "linux"},
        annotations={"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref})]})
    blobs = [(f"blobs/sha256/{hashlib.sha256(b).hexdigest()}", 0o644, b) for b in (blob, config, manifest)]
    archive = _tar([("blobs", 0o755, None), ("blobs/sha256", 0o755, None), *blobs, ("index.json", 0o644, index),
                    ("oci-layout", 0o644, _json({"imageLayoutVersion": "1.0.0"}))], epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / archive_name(ver)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(archive)
    tmp.replace(path)
    path.with_name(path.name.replace(".tar", ".digest")).write_text(f"{_digest(manifest)}  {ref}\n")
    return path


def read_layout(archive: Path) -> dict[str, Any]:
    """The archive's index, manifest, config and layer tar (bytes), checking every digest on the way."""
    with tarfile.open(archive) as tar:
        def blob(desc: dict[str, Any]) -> bytes:
            f = tar.extractfile("blobs/sha256/" + desc["digest"].split(":", 1)[1])
            data = f.read() if f else b""
            if _digest(data) != desc["digest"] or len(data) != desc["size"]:
                raise ValueError(f"{archive.name}: blob {desc['digest']} does not match its descriptor")
            return data

        index_file = tar.extractfile("index.json")
        index = json.loads(index_file.read() if index_file else b"{}")
        manifest_desc = index["manifests"][0]
        manifest = json.loads(blob(manifest_desc))
        config = json.loads(blob(manifest["config"]))
        layers = [gzip.decompress(blob(d)) for d in manifest["layers"]]
        for raw, diff_id in zip(layers, config["rootfs"]["diff_ids"]):
            if _digest(raw) != diff_id:
                raise ValueError(f"{archive.name}: a layer does not match its diff_id")
        return {"index": index, "manifest_digest": manifest_desc["digest"], "manifest": manifest, "config": config,
                "layers": layers, "members": tar.getmembers()}
