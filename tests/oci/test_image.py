"""The k8s-sync image (dist/hostagent-k8s-sync-V.oci.tar from packaging/build.sh): what it holds, that it
is reproducible and listed in SHA256SUMS, and that it runs under crun as the Deployment runs it: uid
65532, no capabilities, a read-only root, /tmp from the emptyDir, the service account where Kubernetes
puts it."""
from __future__ import annotations

import calendar
import hashlib
import io
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from tests.dist import single_file_in, version
from tests.oci.conftest import docs, find, oci


def _epoch(image: dict[str, Any]) -> int:
    """The build's epoch, from the config's `created` (UTC)."""
    return calendar.timegm(time.strptime(image["config"]["created"], "%Y-%m-%dT%H:%M:%SZ"))


def test_image_content(dist: Path, oci_archive: Path) -> None:
    image = oci.read_layout(oci_archive)  # every blob checked against its digest
    epoch = _epoch(image)
    # The outer tar: sorted, owned by 0:0, every time the epoch.
    names = [m.name for m in image["members"]]
    assert names == sorted(names) and names[-2:] == ["index.json", "oci-layout"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in image["members"]} == {(0, 0, "", "", epoch)}
    # One layer: the single file, the user's passwd/group lines, nsswitch, /tmp. No shell, no package manager.
    (raw,) = image["layers"]
    with tarfile.open(fileobj=io.BytesIO(raw)) as layer:
        members = {m.name: m for m in layer.getmembers()}
        assert sorted(members) == ["etc", "etc/group", "etc/nsswitch.conf", "etc/passwd", "tmp", "usr", "usr/local",
                                   "usr/local/bin", "usr/local/bin/hostagent"]
        assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, epoch)}
        binary = layer.extractfile("usr/local/bin/hostagent")
        assert binary and binary.read() == single_file_in(dist).read_bytes()
        assert members["usr/local/bin/hostagent"].mode == 0o755 and members["tmp"].mode == 0o1777
        passwd = layer.extractfile("etc/passwd")
        assert passwd and "nonroot:x:65532:65532:" in passwd.read().decode()
    cfg = image["config"]["config"]
    assert cfg["User"] == "65532:65532" and cfg["Entrypoint"] == ["/usr/local/bin/hostagent", "k8s-sync", "run"]
    assert {"TMPDIR=/tmp", "XDG_CACHE_HOME=/tmp/cache"} <= set(cfg["Env"]) and "Cmd" not in cfg
    assert image["config"]["architecture"] == "amd64" and image["config"]["os"] == "linux"
    ref = f"{oci.NAME}:{version()}"
    assert image["index"]["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == ref
    assert find(docs("k8s-sync.yaml"), "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == ref
    # The manifest digest is stated beside it, and both files are in SHA256SUMS.
    digest_file = oci_archive.with_name(oci_archive.name.replace(".tar", ".digest"))
    assert digest_file.read_text() == f"{image['manifest_digest']}  {ref}\n"
    sums = {name: digest for digest, name in (line.split("  ", 1) for line in (dist / "SHA256SUMS").read_text().splitlines())}
    for f in (oci_archive, digest_file):
        assert sums[f.name] == hashlib.sha256(f.read_bytes()).hexdigest()


def test_image_is_reproducible(dist: Path, oci_archive: Path, tmp_path: Path) -> None:
    """The same single file and epoch give the same bytes (so the same manifest digest)."""
    epoch = _epoch(oci.read_layout(oci_archive))
    again = oci.build(single_file_in(dist), tmp_path, epoch=epoch, ver=version())
    assert again.read_bytes() == oci_archive.read_bytes()


def test_umoci_reads_the_layout(oci_archive: Path, tmp_path: Path) -> None:
    """Another implementation of the image spec lists it under its name."""
    with tarfile.open(oci_archive) as tar:
        tar.extractall(tmp_path / "layout", filter="data")
    out = subprocess.run(["umoci", "ls", "--layout", str(tmp_path / "layout")], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [f"{oci.NAME}:{version()}"]


def test_runs_as_the_deployment_says(pod: Any) -> None:
    """uid 65532, no capabilities, read-only root, /tmp a tmpfs: the file unpacks there and runs."""
    code, out = pod(files={}, env={}, args=["--version"], command=["/usr/local/bin/hostagent"]).run()
    assert (code, out) == (0, f"hostagent {version()}\n")


def test_without_the_tmp_volume_one_line(pod: Any) -> None:
    """The emptyDir is what makes a read-only root work: without it, one line and exit 2."""
    code, out = pod(files={}, env={}, args=["--version"], command=["/usr/local/bin/hostagent"], drop_volumes=("tmp",)).run()
    assert code == 2 and len(out.splitlines()) == 1 and "Read-only file system" in out, out


def _status(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def _root_mount_options(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields[5].split(",")
    raise AssertionError("no / in the container's mountinfo")


def assert_confined(pid: int) -> None:
    """What the kernel says about the container's process, not what config.json asked for."""
    st = _status(pid)
    assert st["Uid"].split() == ["65532"] * 4 and st["Gid"].split() == ["65532"] * 4
    assert {st[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}
    assert st["NoNewPrivs"].strip() == "1"
    assert "ro" in _root_mount_options(pid)
