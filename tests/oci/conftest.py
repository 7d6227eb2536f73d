"""k8s-sync in the cluster: deploy/k8s-sync.yaml and the image built from the single file (packaging/oci.py).

`pod` turns the image and the Deployment's pod spec into an OCI runtime bundle the way a kubelet and its
runtime would (umoci unpacks the image and writes the image's part of config.json: user, entrypoint, env;
the pod spec adds args, securityContext, volumes, the service-account files and KUBERNETES_SERVICE_*),
and runs it with crun, in the host's network namespace so it reaches the fakes on loopback."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import yaml

from tests.dist import packaging_module, version

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


oci = packaging_module("oci")  # packaging/oci.py, the image build


def docs(name: str) -> list[dict[str, Any]]:
    with open(DEPLOY / name) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind]
    assert len(found) == 1, f"want one {kind}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="session")
def oci_archive(dist: Path) -> Path:
    return dist / f"hostagent-k8s-sync-{version()}.oci.tar"


def quantity(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(value[:-len(suffix)]) * factor
    return int(value)


class Pod:
    """One container of the Deployment, as crun runs it: start(), pid(), stop(), or run() to the end."""

    def __init__(self, work: Path, archive: Path, deployment: dict[str, Any], files: dict[str, dict[str, bytes]],
                 env: dict[str, str], command: Optional[list[str]] = None, args: Optional[list[str]] = None,
                 drop_volumes: tuple[str, ...] = ()) -> None:
        """files: volume name -> {file name: content} for the configMap and the service account;
        command/args: as a container's (replace the image's entrypoint / the Deployment's args)."""
        if shutil.which("crun") is None or shutil.which("umoci") is None:
            pytest.fail("crun and umoci are needed (.ci/apt-packages.txt)")
        self.id = f"hostagent-oci-{uuid.uuid4().hex[:8]}"
        self.state = work / "crun-state"
        self.bundle = work / "bundle"
        layout = work / "layout"
        layout.mkdir()
        with tarfile.open(archive) as tar:
            tar.extractall(layout, filter="data")
        ref = json.loads((layout / "index.json").read_text())["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        subprocess.run(["umoci", "unpack", "--image", f"{layout}:{ref}", str(self.bundle)], check=True, capture_output=True)
        config = json.loads((self.bundle / "config.json").read_text())
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        sc = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        proc = config["process"]
        proc["terminal"] = False
        # Kubernetes: command replaces the entrypoint, args the image's Cmd (none here).
        entry = command if command is not None else container.get("command", proc["args"])
        proc["args"] = entry + (args if args is not None else container.get("args", []))
        proc["env"] = proc["env"] + [f"{k}={v}" for k, v in env.items()]
        proc["user"] = {"uid": sc["runAsUser"], "gid": sc["runAsGroup"]}
        caps: list[str] = [] if "ALL" in sc["capabilities"]["drop"] else proc["capabilities"]["bounding"]
        proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
        proc["noNewPrivileges"] = not sc["allowPrivilegeEscalation"]
        config["root"]["readonly"] = bool(sc["readOnlyRootFilesystem"])
        linux = config["linux"]
        # The host's network namespace: the fakes listen on its loopback.
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        linux.pop("resources", None)  # cgroups are off (below): the limits are the kubelet's, not under test
        mounts = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for vm in container["volumeMounts"]:
            if vm["name"] in drop_volumes:
                continue
            volume = volumes[vm["name"]]
            if "emptyDir" in volume:
                size = quantity(volume["emptyDir"].get("sizeLimit", "64Mi")) // 1024
                # The kubelet makes an emptyDir root-owned 0777, no sticky bit.
                mounts.append({"destination": vm["mountPath"], "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "nodev", "mode=0777", f"size={size}k"]})
            else:
                mounts.append(self._bind(work, vm["name"], files.get(vm["name"], {}), vm["mountPath"], vm.get("readOnly", False)))
        if spec.get("automountServiceAccountToken", True) and "serviceaccount" in files:
            mounts.append(self._bind(work, "serviceaccount", files["serviceaccount"], SA_DIR, True))
        config["mounts"] = mounts
        (self.bundle / "config.json").write_text(json.dumps(config, indent=1))
        self.volumes = work / "volumes"  # each volume's files on the host, by name (as the kubelet updates them)
        self.proc: Optional[subprocess.Popen[str]] = None
        self.log = work / "container.log"

    @staticmethod
    def _bind(work: Path, name: str, content: dict[str, bytes], dest: str, read_only: bool) -> dict[str, Any]:
        """A volume as the kubelet makes it: files readable by the pod's user, bind-mounted."""
        src = work / "volumes" / name
        src.mkdir(parents=True)
        for fname, data in content.items():
            (src / fname).write_bytes(data)
            (src / fname).chmod(0o644)
        src.chmod(0o755)
        (work / "volumes").chmod(0o755)
        work.chmod(0o755)
        return {"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "ro" if read_only else "rw"]}

    def _crun(self, *args: str) -> list[str]:
        # cgroups off: this machine mounts a cgroup2 with a controller beside the v1 hierarchy ("hybrid"),
        # which crun refuses even with cgroups disabled, so crun runs in a mount namespace of its own
        # without that mount (the host's mounts are untouched).
        unified = "/sys/fs/cgroup/unified"
        pre = f"umount -l {unified} && " if os.path.ismount(unified) else ""
        cmd = " ".join(["exec", "crun", "--cgroup-manager=disabled", "--root", str(self.state), *args])
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", pre + cmd]

    def start(self) -> Pod:
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(self._crun("run", "--bundle", str(self.bundle), self.id), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        return self

    def run(self, timeout: float = 60) -> tuple[int, str]:
        self.start()
        assert self.proc
        code = self.proc.wait(timeout)
        return code, self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pid(self) -> int:
        """The container's first process, from crun's state."""
        out = subprocess.run(self._crun("state", self.id), capture_output=True, text=True, check=True).stdout
        return int(json.loads(out)["pid"])

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM as the kubelet sends it; (exit code, seconds until the container ended)."""
        assert self.proc
        started = time.monotonic()
        subprocess.run(self._crun("kill", self.id, "TERM"), capture_output=True, check=False)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            subprocess.run(self._crun("kill", self.id, "KILL"), capture_output=True, check=False)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
        subprocess.run(self._crun("delete", "--force", self.id), capture_output=True, check=False)


@pytest.fixture
def pod(tmp_path: Path, oci_archive: Path) -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("needs root (crun, umoci)")
    made: list[Pod] = []

    def make(**kw: Any) -> Pod:
        work = tmp_path / f"pod{len(made)}"
        work.mkdir()
        p = Pod(work, oci_archive, find(docs("k8s-sync.yaml"), "Deployment"), **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
