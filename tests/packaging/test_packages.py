"""The .deb on a booted Debian 12 (nspawn) host with no hostagent; the .rpm's metadata, files and
scriptlets; SHA256SUMS; the collection tarball installed offline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.hostsnap import diff as snapshot_diff
from tests.dist import version
from tests.system.hostcmd import INSTALL, snapshot

REPO = Path(__file__).resolve().parents[2]
SNAP_ROOTS = "/etc /usr /var/lib /var/log /var/cache /sys/fs/cgroup"
# apt as users run it, minus what it changes under /var/cache (the snapshot compares that dir): its
# package caches, and the owner of archives/partial (its download sandbox user).
APT_REMOVE = ("apt-get -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root "
              "remove -y hostagent")


def _rpm(dist: Path, *args: str) -> str:
    if shutil.which("rpm") is None:
        pytest.skip("rpm not installed (Debian package rpm)")
    rpm = dist / f"hostagent-{version()}-1.x86_64.rpm"
    return subprocess.run(["rpm", *args, str(rpm)], check=True, capture_output=True, text=True).stdout


def test_rpm_metadata(dist: Path):
    head = _rpm(dist, "-qip").split("\nDescription :", 1)[0]
    info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in head.splitlines())}
    assert info["Name"] == "hostagent" and info["Version"] == version() and info["Release"] == "1", info
    assert info["Architecture"] == "x86_64" and info["License"] == "Apache-2.0", info
    assert "DeepFlow agent" in info["Summary"], info
    assert info["Build Host"] == "reproducible", info  # not the build machine's name
    assert _rpm(dist, "-qlp").split() == RPM_FILES
    # Nothing but rpm's own features and the shell for the scriptlets: the file brings its libraries.
    requires = _rpm(dist, "-qp", "--requires").splitlines()
    assert all(r.startswith("rpmlib(") or r == "/bin/sh" for r in requires), requires
    modes = _rpm(dist, "-qp", "--queryformat", "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME}\n]")
    assert "/usr/sbin/hostagent -rwxr-xr-x root root" in modes.splitlines(), modes


def test_rpm_scriptlets_require_their_interpreter(dist: Path):
    # Each scriptlet's interpreter is a Requires with that scriptlet's flag (Requires(preun): /bin/sh,
    # ...), as rpmbuild declares it: in one transaction rpm installs the shell before hostagent's %post
    # and erases it only after hostagent's %preun and %postun ran.
    tags = {"pre": "PREIN", "post": "POSTIN", "preun": "PREUN", "postun": "POSTUN"}
    shipped = {kind: _rpm(dist, "-qp", "--qf", f"%{{{tag}PROG}}") for kind, tag in tags.items()
               if _rpm(dist, "-qp", "--qf", f"%{{{tag}}}") != "(none)"}
    assert set(shipped) == {"post", "preun", "postun"} and set(shipped.values()) == {"/bin/sh"}, shipped
    lines = _rpm(dist, "-qp", "--qf", "[%{REQUIREFLAGS:deptype} %{REQUIRENAME}\n]").splitlines()
    required = {(flag, name) for deptype, name in (line.split(" ", 1) for line in lines) for flag in deptype.split(",")}
    assert set(shipped.items()) <= required, lines


# The files, and the dirs the .rpm owns (its own, and zsh's completion dir: packaging/nfpm.yaml).
RPM_FILES = ["/usr/sbin/hostagent", "/usr/share/bash-completion/completions/hostagent", "/usr/share/doc/hostagent",
             "/usr/share/doc/hostagent/README.md", "/usr/share/licenses/hostagent", "/usr/share/licenses/hostagent/LICENSE",
             "/usr/share/man/man8/hostagent.8.gz", "/usr/share/zsh/site-functions", "/usr/share/zsh/site-functions/_hostagent"]


def _prerm(body: str, arg: str, interactive: bool, env: dict | None = None) -> subprocess.CompletedProcess:
    """The scriptlet as rpm or dpkg runs it; `interactive`: stdin is a terminal (an admin's shell)."""
    import pty

    master, slave = pty.openpty()
    try:
        return subprocess.run(["sh", "-c", body, "prerm", arg], stdin=slave if interactive else subprocess.DEVNULL,
                              capture_output=True, text=True, check=False, env={"PATH": os.environ["PATH"], **(env or {})})
    finally:
        os.close(master)
        os.close(slave)


def test_rpm_scriptlets_refuse_an_interactive_erase_while_an_agent_is_installed(dist: Path, tmp_path: Path):
    scripts = _rpm(dist, "-qp", "--scripts")
    assert "preuninstall scriptlet" in scripts and "/var/lib/hostagent/manifest.json" in scripts
    # Run the preuninstall body the way rpm would on an erase ($1 = 0) and an upgrade ($1 = 1).
    body = scripts.split("preuninstall scriptlet (using /bin/sh):\n", 1)[1].split("\npostuninstall", 1)[0]
    fake = body.replace("/var/lib/hostagent/manifest.json", str(tmp_path / "manifest.json"))
    assert _prerm(fake, "0", interactive=True).returncode == 0  # nothing installed
    (tmp_path / "manifest.json").write_text("{}")
    r = _prerm(fake, "0", interactive=True)
    assert r.returncode != 0 and "hostagent uninstall" in r.stderr, r
    # Not at a terminal (dnf-automatic, a script): never fails the transaction; says what is left.
    r = _prerm(fake, "0", interactive=False)
    assert r.returncode == 0 and "warning: an agent is installed" in r.stderr, r
    # Debian's way to say "do not ask": the same.
    r = _prerm(fake, "0", interactive=True, env={"DEBIAN_FRONTEND": "noninteractive"})
    assert r.returncode == 0 and "warning" in r.stderr, r
    assert _prerm(fake, "1", interactive=True).returncode == 0  # upgrade
    # dpkg: a package replacing hostagent takes /usr/sbin/hostagent over.
    r = subprocess.run(["sh", "-c", fake, "prerm", "remove", "in-favour", "hostagent-ng", "1.0"], capture_output=True, check=False)
    assert r.returncode == 0


def test_deb_metadata(dist: Path):
    deb = dist / f"hostagent_{version()}_amd64.deb"
    fields = {f: subprocess.run(["dpkg-deb", "-f", str(deb), f], capture_output=True, text=True).stdout.strip()
              for f in ("Package", "Version", "Architecture", "Depends", "Section")}
    assert fields == {"Package": "hostagent", "Version": f"{version()}-1", "Architecture": "amd64", "Depends": "",
                      "Section": "admin"}
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    files = [line.split()[-1] for line in listing.splitlines() if not line.startswith("d")]
    assert files == ["./usr/sbin/hostagent", "./usr/share/bash-completion/completions/hostagent",
                     "./usr/share/doc/hostagent/README.md.gz", "./usr/share/doc/hostagent/changelog.Debian.gz",
                     "./usr/share/doc/hostagent/copyright", "./usr/share/lintian/overrides/hostagent",
                     "./usr/share/man/man8/hostagent.8.gz", "./usr/share/zsh/vendor-completions/_hostagent"], files


def test_sha256sums_cover_every_artifact(dist: Path):
    listed = {line.split("  ", 1)[1] for line in (dist / "SHA256SUMS").read_text().splitlines()}
    for name in (f"hostagent-{version()}-linux-x86_64", f"hostagent_{version()}_amd64.deb",
                 f"hostagent-{version()}-1.x86_64.rpm", f"hostagent-deepflow-{version()}.tar.gz"):
        assert name in listed
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dist, check=True)


def test_collection_installs_offline(dist: Path, tmp_path: Path):
    from tests.ansible.runner import ansible_bin

    galaxy = ansible_bin("ansible-galaxy")
    if galaxy is None:
        pytest.skip("ansible-galaxy not installed (tests/ansible/requirements.txt)")
    tarball = dist / f"hostagent-deepflow-{version()}.tar.gz"
    with tarfile.open(tarball) as tf:
        names = set(tf.getnames())
        manifest = json.load(tf.extractfile("MANIFEST.json"))
        runtime = yaml.safe_load(tf.extractfile("meta/runtime.yml"))
    assert {"plugins/modules/hostagent.py", "roles/deepflow_agent/tasks/main.yml", "CHANGELOG.md"} <= names
    assert not [n for n in names if n.startswith("collections")]
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("hostagent", "deepflow", version())
    assert runtime["requires_ansible"].startswith(">=")
    env = dict(os.environ, ANSIBLE_GALAXY_SERVER="http://127.0.0.1:9/")  # offline: nothing to reach
    subprocess.run([galaxy, "collection", "install", "--offline", "-p", str(tmp_path), str(tarball)],
                   check=True, capture_output=True, env=env)
    assert (tmp_path / "ansible_collections/hostagent/deepflow/plugins/modules/hostagent.py").exists()


# --- the .deb on a booted host ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def deb_host(dist: Path):
    from tests.images.nspawn import nspawn_host

    with nspawn_host(wheelhouse=False) as h:
        h.put("/root/hostagent.deb", (dist / f"hostagent_{version()}_amd64.deb").read_bytes())
        yield h


def _snapshot(host) -> dict:
    from tests.system.conftest import comparable

    return comparable(snapshot(host, SNAP_ROOTS))


@pytest.mark.nspawn
@pytest.mark.slow
@pytest.mark.root
def test_deb_lifecycle(deb_host):
    host = deb_host
    before = _snapshot(host)

    # Installing the package installs hostagent, not the agent.
    host.run("dpkg -i /root/hostagent.deb").check()
    assert host.run("hostagent --version").check().stdout == f"hostagent {version()}\n"
    assert host.run("test -e /etc/systemd/system/deepflow-agent.service || test -e /var/lib/hostagent").rc != 0
    assert "not installed" in host.run("hostagent status").stdout

    # The agent, installed by the packaged file: the unit calls /usr/sbin/hostagent itself.
    rc, out, err = host.run(INSTALL, timeout=180)
    assert rc == 0, f"{out}\n{err}\n{host.journal()}"
    unit = host.get("/etc/systemd/system/deepflow-agent.service")
    assert "ExecStart=/usr/sbin/hostagent exec --prepared " in unit, unit
    assert host.run("systemctl is-active deepflow-agent").stdout.strip() == "active", host.journal()
    agent_pid = host.run("systemctl show -p MainPID --value deepflow-agent").check().stdout.strip()
    assert host.run(f"stat -c %U /proc/{agent_pid}").check().stdout.strip() == "deepflow"

    # An admin removing the package at a terminal (script(1) gives apt one; apt hands dpkg a pty) is
    # refused, and the manifest and the agent stay as they were.
    manifest = host.get("/var/lib/hostagent/manifest.json")
    r = host.run(f"script -qec '{APT_REMOVE}' /dev/null")
    assert r.rc != 0 and "hostagent uninstall" in (r.stdout + r.stderr), r
    # Still installed (dpkg records the wish to remove it: "deinstall ok installed").
    assert " ok installed\n" in host.run("dpkg -s hostagent").stdout
    assert host.get("/var/lib/hostagent/manifest.json") == manifest
    assert host.run("systemctl is-active deepflow-agent").stdout.strip() == "active"
    assert host.run("systemctl show -p MainPID --value deepflow-agent").stdout.strip() == agent_pid

    # A non-interactive removal (apt in a script, a dist-upgrade) is not failed: the package goes, the
    # agent keeps running untouched, and dpkg's output says how to finish.
    r = host.run(f"{APT_REMOVE} </dev/null")
    assert r.rc == 0 and "warning: an agent is installed" in (r.stdout + r.stderr), r
    assert host.run("test -e /usr/sbin/hostagent").rc != 0
    assert host.get("/var/lib/hostagent/manifest.json") == manifest
    assert host.run("systemctl show -p MainPID --value deepflow-agent").stdout.strip() == agent_pid
    # Installing the package again gives the agent its hostagent back.
    host.run("dpkg -i /root/hostagent.deb").check()
    assert host.run("hostagent status").rc == 0

    # hostagent uninstall first; then remove and purge: the host is as it was before the package.
    host.run("hostagent uninstall --yes").check()
    host.run("dpkg -r hostagent").check()
    assert host.run("test -e /usr/sbin/hostagent || test -e /var/cache/hostagent").rc != 0
    host.run("dpkg -P hostagent").check()
    assert snapshot_diff(before, _snapshot(host)) == []
