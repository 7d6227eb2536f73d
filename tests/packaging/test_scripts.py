"""The packages' scriptlets (packaging/scripts), run as dpkg and rpm run them, on temp paths: the
upgrade keeps an unpacked copy a process still runs from (a k8s-sync service of the earlier version);
removal is refused while k8s-sync is installed."""
from __future__ import annotations

import os
import pty
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "packaging" / "scripts"


def script(name: str, **paths: Path) -> str:
    body = (SCRIPTS / name).read_text()
    for real, tmp in paths.items():
        body = body.replace(real.replace("_", "/"), str(tmp))
    return body


def test_postinst_keeps_the_copy_in_use(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    running, stale = cache / ("a" * 64), cache / ("b" * 64)
    for d in (running, stale, cache / ".partial-x"):
        d.mkdir(parents=True)
    shutil.copy("/bin/sleep", running / "hostagent")
    (stale / "hostagent").write_text("")
    body = script("postinst.sh", _var_cache_hostagent=cache)
    proc = subprocess.Popen([str(running / "hostagent"), "30"])
    try:
        r = subprocess.run(["sh", "-c", body, "postinst", "configure"], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r
        assert sorted(p.name for p in cache.iterdir()) == [running.name]
    finally:
        proc.kill()
        proc.wait()
    subprocess.run(["sh", "-c", body, "postinst", "configure"], check=True)
    assert not cache.exists()


def _prerm(body: str, *args: str, interactive: bool) -> subprocess.CompletedProcess:
    """As dpkg/rpm run it; `interactive`: stdin is a terminal (an admin's shell)."""
    master, slave = pty.openpty()
    try:
        return subprocess.run(["sh", "-c", body, "prerm", *args], stdin=slave if interactive else subprocess.DEVNULL,
                              capture_output=True, text=True, check=False, env={"PATH": os.environ["PATH"]})
    finally:
        os.close(master)
        os.close(slave)


def test_prerm_refuses_an_interactive_removal_while_k8s_sync_is_installed(tmp_path: Path) -> None:
    body = script("prerm.sh", _var_lib_hostagent=tmp_path)
    assert _prerm(body, "remove", interactive=True).returncode == 0  # nothing installed
    (tmp_path / "k8s-sync.json").write_text("{}")
    for how in ("remove", "0"):  # deb, rpm erase
        r = _prerm(body, how, interactive=True)
        assert r.returncode == 1 and "hostagent k8s-sync uninstall" in r.stderr, r
        r = _prerm(body, how, interactive=False)  # a script or a dist-upgrade: never fails the transaction
        assert r.returncode == 0 and "warning: k8s-sync is installed" in r.stderr, r
    assert _prerm(body, "upgrade", interactive=True).returncode == 0
    assert _prerm(body, "1", interactive=True).returncode == 0
