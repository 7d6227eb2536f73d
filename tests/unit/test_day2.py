"""Day 2 without root: the agent's environment, the launcher's take-over of the agent's own upgrade, the
remote-upgrade option and where each mode puts the binary, and preflight's refusal of a launcher the
unit cannot reach."""
from __future__ import annotations

import os
import stat

import pytest

from hostagent import caps, host, launcher, manifest, options, planner
from hostagent.errors import InputError
from hostagent.host import paths
from hostagent.render import unit
from hostagent.steps.files import Binary
from hostagent.status import status


def test_agent_env_drops_the_bundle_and_opts_out_of_the_watcher_election() -> None:
    given = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/var/cache/hostagent/abc/_internal",
             "LD_LIBRARY_PATH_ORIG": "/opt/site/lib", "_PYI_ARCHIVE_FILE": "/x", "_MEIPASS2": "/y",
             "PYTHONHOME": "/z", "PYTHONUTF8": "1", "IN_CONTAINER": "1", "K8S_WATCH_POLICY": "watch-only",
             "RUST_BACKTRACE": "1"}
    env = launcher.agent_env(given, frozen=True)
    # The init's own LD_LIBRARY_PATH (saved by PyInstaller's loader) comes back; the bundle's never.
    assert env == {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/opt/site/lib", "RUST_BACKTRACE": "1",
                   "K8S_WATCH_POLICY": "watch-disabled"}
    bare = launcher.agent_env({"PATH": "/bin", "LD_LIBRARY_PATH": "/var/cache/hostagent/abc/_internal"}, frozen=True)
    assert bare == {"PATH": "/bin", "K8S_WATCH_POLICY": "watch-disabled"}
    # From a venv nothing of the interpreter is in the environment: an admin's setting stays.
    assert launcher.agent_env({"LD_LIBRARY_PATH": "/opt/site/lib"}, frozen=False)["LD_LIBRARY_PATH"] == "/opt/site/lib"


def _stat(uid: int, gid: int, nlink: int = 1) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | 0o755, 1, 1, nlink, uid, gid, 10, 0, 0, 0))


def test_launcher_takes_over_only_the_agents_own_upgrade() -> None:
    launcher._check_upgraded("/b", _stat(1000, 1000), uid=1000, gid=1000)  # the agent wrote it
    launcher._check_upgraded("/b", _stat(0, 1000), uid=1000, gid=1000)  # as the last start left it
    for foreign in (_stat(0, 0), _stat(0, 42), _stat(1001, 1000), _stat(1000, 1000, nlink=2), _stat(0, 1000, nlink=2)):
        with pytest.raises(OSError, match="not the agent's own upgrade"):
            launcher._check_upgraded("/b", foreign, uid=1000, gid=1000)


def test_a_hard_link_in_the_upgrade_dir_is_refused_and_left_alone(tmp_path) -> None:
    """A link to a file the user must not get (here: another of its names) keeps its owner, mode and caps."""
    d = tmp_path / "upgrade"
    d.mkdir()
    d.chmod(0o770)
    binary = d / "deepflow-agent"
    binary.write_bytes(b"\x7fELF")
    binary.chmod(0o644)
    os.link(binary, tmp_path / "elsewhere")
    (d / "deepflow-agent.test").write_text("")
    with pytest.raises(OSError, match="2 links"):
        launcher.ensure_binary(str(binary), caps.resolve("cbpf-minimal"), os.getgid(), os.getuid())
    assert stat.S_IMODE(binary.stat().st_mode) == 0o644
    assert (d / "deepflow-agent.test").exists()  # nothing is touched before the binary is known to be the agent's


def test_leftovers_of_an_upgrade_cut_short_go_at_the_next_start(tmp_path, monkeypatch) -> None:
    d = tmp_path / "upgrade"
    d.mkdir()
    d.chmod(0o770)
    binary = d / "deepflow-agent"
    binary.write_bytes(b"\x7fELF")
    for leftover in (".test", ".bak"):
        (d / f"deepflow-agent{leftover}").write_text("half")
    # Past the take-over check, owner and caps need root: stop at the first change.
    monkeypatch.setattr(os, "fchown", lambda *a: (_ for _ in ()).throw(PermissionError("stop")))
    with pytest.raises(PermissionError):
        launcher.ensure_binary(str(binary), caps.resolve("cbpf-minimal"), os.getgid(), os.getuid())
    assert sorted(os.listdir(d)) == ["deepflow-agent"]


def test_remote_upgrade_option() -> None:
    base = {"controller_ips": ["10.0.0.1"]}
    assert options.build(base).remote_upgrade == "auto"
    assert options.build(base, {"remote-upgrade": "allow"}).remote_upgrade == "allow"  # config-file key
    with pytest.raises(InputError, match="auto, allow or deny"):
        options.build(dict(base, remote_upgrade="yes"))


def test_auto_allows_unless_a_package_owns_the_binary_and_keeps_an_installed_hosts_mode(fake) -> None:
    root, runner = fake
    binary = root / "usr/sbin/deepflow-agent"
    binary.write_bytes(b"\x7fELF agent 1.0")
    opts = options.build({"controller_ips": ["10.0.0.1"], "agent_binary": str(binary)})
    assert planner.remote_upgrade_mode(opts) == ("allow", "auto: no dpkg/rpm package owns /usr/sbin/deepflow-agent")
    assert planner.Resolved((), None, None, "deepflow", remote_upgrade="allow").binary == paths.AGENT_UPGRADABLE
    runner.own("/usr/sbin/deepflow-agent", "deepflow-agent")  # DeepFlow's .deb: its upgrades must keep reaching the agent
    mode, why = planner.remote_upgrade_mode(opts)
    assert (mode, why) == ("deny", "auto: DeepFlow's package deepflow-agent owns /usr/sbin/deepflow-agent, and its "
                                   "upgrades must keep reaching the agent")
    assert planner.Resolved((), None, None, "deepflow", remote_upgrade=mode).binary == paths.AGENT_BINARY
    # Explicit modes win over the package.
    assert planner.remote_upgrade_mode(options.build({"controller_ips": ["10.0.0.1"], "agent_binary": str(binary),
                                                      "remote_upgrade": "allow"})) == ("allow", "--remote-upgrade allow")

    # Installed: auto keeps the mode in force, where the recorded binary is (another would move it).
    recorded = manifest.Manifest.new(opts.to_dict(), {})
    recorded.save()
    assert planner.remote_upgrade_mode(opts)[0] == "deny"  # nothing recorded says: the package decides
    # A run killed before its binary: what it recorded (the binary would otherwise move on the next run).
    recorded.data["facts"] = {"remote_upgrade": {"mode": "allow", "why": "auto: first"}}
    recorded.save()
    assert planner.remote_upgrade_mode(opts) == ("allow", "auto: first")
    recorded.put(Binary(path=host.current().path(paths.AGENT_UPGRADABLE), source=str(binary), group="deepflow"), {})
    recorded.save()
    assert planner.remote_upgrade_mode(opts) == ("allow", "auto: first")
    assert status()["remote_upgrade"] == {"mode": "allow", "why": "auto: first"}
    # Manifests from before auto: the option as given, or none at all.
    for given, why in (("allow", "--remote-upgrade allow"),
                       (None, "installed before --remote-upgrade auto (the binary stays where it was installed)")):
        recorded.data.update(options={"remote_upgrade": given} if given else {"user": "deepflow"}, facts={})
        recorded.save()
        assert planner.remote_upgrade_mode(opts) == ("allow", why)
    recorded.data["steps"] = []
    recorded.save()
    assert status()["remote_upgrade"] == {"mode": "deny", "why": "no binary installed yet"}


def test_each_init_runs_the_upgradable_binary_and_the_unit_may_write_its_dir() -> None:
    names = caps.resolve("deepflow-doc")
    text = unit.render("d", names, 1000, 768, binary=paths.AGENT_UPGRADABLE)
    assert f"ReadWritePaths={paths.AGENT_UPGRADE_DIR}" in text.splitlines()
    assert f"-- {paths.AGENT_UPGRADABLE} -f {paths.CONFIG_FILE}" in text
    assert paths.AGENT_UPGRADE_DIR not in unit.render("d", names, 1000, 768)
    assert unit.render_sysv_script("d", names, 1000, 768, paths.AGENT_UPGRADABLE).endswith(
        f"-- {paths.AGENT_UPGRADABLE} -f {paths.CONFIG_FILE}\n")
    assert f"-- {paths.AGENT_UPGRADABLE} -f" in unit.render_openrc("d", names, 1000, 768, paths.AGENT_UPGRADABLE)


def test_preflight_refuses_a_launcher_under_tmp_for_systemd(monkeypatch) -> None:
    monkeypatch.setattr(unit, "launcher_files", lambda: ["/tmp/hostagent-1.0-linux-x86_64"])
    with pytest.raises(InputError, match="PrivateTmp= hides /tmp"):
        planner.check_launcher("systemd")
    monkeypatch.setattr(unit, "launcher_files", lambda: ["/var/tmp/venv/bin/python3"])
    with pytest.raises(InputError, match="PrivateTmp= hides /tmp"):
        planner.check_launcher("systemd")
