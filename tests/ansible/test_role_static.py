"""The role without a test host: lint, variables documented and in sync, the module's CLI contract."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ansible import vars_table
from tests.ansible.runner import ANSIBLE_DIR, ansible_bin

ROLE = ANSIBLE_DIR / "roles" / "deepflow_agent"
MODULE = ANSIBLE_DIR / "plugins" / "modules" / "hostagent.py"
FQCN = "hostagent.deepflow.hostagent"


def _module():
    spec = importlib.util.spec_from_file_location("role_hostagent_module", MODULE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _need(tool: str) -> str:
    path = ansible_bin(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (tests/ansible/requirements.txt)")
    return path


def _module_on_localhost(ansible: str, tmp_path: Path, args: dict) -> subprocess.CompletedProcess:
    """`ansible localhost --check -m hostagent`: the module through Ansible's own runner, locally."""
    env = dict(os.environ, ANSIBLE_LIBRARY=str(MODULE.parent), ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "remote"), ANSIBLE_STDOUT_CALLBACK="oneline",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [ansible, "localhost", "-c", "local", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
         "--check", "-m", "hostagent", "-a", json.dumps(args)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)


@pytest.mark.slow
def test_ansible_lint_clean():
    lint = _need("ansible-lint")
    # Offline: no Galaxy, no schema refresh, no version check (only package registries are reachable).
    env = dict(os.environ, ANSIBLE_LINT_SKIP_SCHEMA_UPDATE="1", NO_COLOR="1")
    proc = subprocess.run([lint, "--offline", "--nocolor"], cwd=ANSIBLE_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    assert "Profile 'production' was required, and it passed" in proc.stdout, proc.stdout


def test_every_variable_is_typed_documented_and_defaulted():
    options = vars_table.options()
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(options) == set(defaults), "defaults/main.yml and meta/argument_specs.yml name different variables"
    for name, opt in options.items():
        assert name.startswith("deepflow_agent_"), name
        assert opt.get("type") and opt.get("description"), f"{name}: type and description are required"
        assert opt.get("default") == defaults[name], f"{name}: argument_specs default != defaults/main.yml"


def test_readme_vars_table_matches_argument_specs():
    readme = vars_table.README.read_text()
    assert vars_table.readme_with_table(readme) == readme, \
        "ansible/README.md is out of date: run `python -m tests.ansible.vars_table --write`"


def test_module_builds_the_cli_argv():
    mod = _module()
    params = dict(command="install", executable="/opt/hostagent/bin/hostagent", controller_ips=["10.0.0.1", "10.0.0.2"],
                  controller_port=30035, cluster_id="", watcher_domain="dom", server="srv:30417",
                  domain_timeout=30.0, agent_group="", team_id="", org_id=None, user="deepflow", caps="ebpf",
                  cpu_millicores=500,
                  memory_mib=512, agent_binary="/x/deepflow-agent", remote_upgrade="allow", metrics_textfile="", keep_logs=False)
    assert mod.build_argv(params, dry_run=True) == [
        "/opt/hostagent/bin/hostagent", "install", "--controller-ip", "10.0.0.1", "--controller-ip", "10.0.0.2",
        "--controller-port", "30035", "--watcher-domain", "dom", "--server", "srv:30417", "--domain-timeout", "30.0",
        "--user", "deepflow", "--caps", "ebpf", "--cpu-millicores", "500", "--memory-mib", "512",
        "--agent-binary", "/x/deepflow-agent", "--remote-upgrade", "allow", "--dry-run", "--yes", "--json"]
    # Install flags never leak into uninstall.
    assert mod.build_argv(dict(params, command="uninstall", keep_logs=True), dry_run=False) == [
        "/opt/hostagent/bin/hostagent", "uninstall", "--keep-logs", "--yes", "--json"]


def test_module_turns_planned_steps_into_diffs():
    mod = _module()
    unified = "--- /etc/x (now)\n+++ /etc/x (hostagent)\n@@ -0,0 +1 @@\n+a"
    report = {"steps": [
        {"id": "file:/etc/x", "status": "planned", "diff": unified},
        {"id": "user:deepflow", "status": "planned", "diff": "+ system user deepflow"},
        {"id": "group:deepflow", "status": "unchanged", "diff": None},
        {"id": "service:x", "status": "planned", "diff": None},
    ]}
    assert mod.diffs_of(report) == [
        {"prepared": "--- /etc/x (now)\n+++ /etc/x (hostagent)\n@@ -0,0 +1 @@\n+a\n"},
        {"prepared": "[user:deepflow]\n+ system user deepflow\n"},
    ]


def test_module_reports_the_cli_json_in_check_mode(tmp_path: Path):
    """The module through ansible's own runner, against the real CLI on this machine: uninstall
    --dry-run only reads the manifest, so it is safe here; the result must carry the CLI's JSON."""
    ansible = _need("ansible")
    cli = Path(sys.executable).parent / "hostagent"
    if not cli.exists():
        pytest.skip("hostagent is not installed in this venv")
    proc = _module_on_localhost(ansible, tmp_path, {"command": "uninstall", "executable": str(cli)})
    assert proc.returncode == 0, proc.stdout
    result = json.loads(proc.stdout.split("=>", 1)[1])
    report = result["report"]
    assert report["command"] == "uninstall" and report["dry_run"] is True and report["ok"] is True, report
    assert result["changed"] == report["changed"]
    assert result["cmd"] == [str(cli), "uninstall", "--dry-run", "--yes", "--json"]


def test_module_fails_with_the_cli_error_and_exit_code(tmp_path: Path):
    """Bad input: hostagent exits 2 before it reads the host (options are validated first), and the
    task fails with hostagent's own message, exit code and JSON."""
    ansible = _need("ansible")
    cli = Path(sys.executable).parent / "hostagent"
    if not cli.exists():
        pytest.skip("hostagent is not installed in this venv")
    args = {"command": "install", "executable": str(cli), "controller_ips": ["127.0.0.1"], "caps": "cap_bogus"}
    proc = _module_on_localhost(ansible, tmp_path, args)
    assert proc.returncode != 0 and "FAILED" in proc.stdout, proc.stdout
    result = json.loads(proc.stdout.split("=>", 1)[1])
    assert result["rc"] == 2 and result["report"]["exit_code"] == 2 and result["report"]["ok"] is False, result
    assert "cap_bogus" in result["msg"], result["msg"]


@pytest.mark.parametrize("k8s_sync, refused", [
    ("from the venv", True),  # the unit the k8s-sync install wrote
    ("unit gone", True),  # recorded, no unit: only this hostagent could still uninstall it
    ("from another venv", False),
    ("", False),
])
def test_role_refuses_to_remove_hostagent_under_an_installed_k8s_sync(tmp_path: Path, k8s_sync: str, refused: bool):
    """The role's settings and preflight (tagged always) on this machine, over the local connection, in
    check mode: absent + hostagent_remove (wheelhouse route) fails there, before any task that changes
    something, while k8s-sync is recorded and runs from the venv. Only its paths point into tmp_path."""
    from tests.ansible.runner import run_playbook

    _need("ansible-playbook")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "hostagent-0.1.0-py3-none-any.whl").write_bytes(b"")
    venv = tmp_path / "venv"
    manifest, unit = tmp_path / "k8s-sync.json", tmp_path / "hostagent-k8s-sync.service"
    if k8s_sync:
        manifest.write_text("{}")
    if k8s_sync in ("from the venv", "from another venv"):
        python = venv if k8s_sync == "from the venv" else tmp_path / "venv2"
        unit.write_text(f"[Service]\nExecStart={python}/bin/python3 -I -m hostagent k8s-sync run --config-file x\n")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[agents]\nh1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    extra = {"deepflow_agent_state": "absent", "deepflow_agent_hostagent_remove": True,
             "deepflow_agent_hostagent_wheelhouse": str(wheelhouse), "deepflow_agent_hostagent_venv": str(venv),
             "deepflow_agent_k8s_sync_manifest": str(manifest), "deepflow_agent_k8s_sync_unit": str(unit),
             "deepflow_agent_manifest": str(tmp_path / "none.json")}
    only_preflight = ("--check", "--tags", "only-the-always-tagged-phases")
    run = run_playbook(inventory, extra, *only_preflight)
    refusal = run.task("deepflow_agent : Refuse to remove hostagent while k8s-sync runs from it")
    if refused:
        assert run.rc != 0 and refusal["status"] == "failed", run.log
        assert refusal["result"]["msg"].startswith(f"k8s-sync is installed on this host ({manifest}) and runs from "
                                                   f"{venv}; removing it"), refusal["result"]
        assert f"Run `{venv}/bin/hostagent k8s-sync uninstall` first" in refusal["result"]["msg"]
    else:
        assert run.rc == 0 and refusal["status"] == "skipped", run.log
    # Keeping hostagent is never a reason to stop.
    assert run_playbook(inventory, dict(extra, deepflow_agent_hostagent_remove=False), *only_preflight).rc == 0


def test_role_refuses_to_replace_a_packaged_hostagent(tmp_path: Path):
    """The role's default path is the packages' (/usr/sbin/hostagent): a file a package owns there is not
    replaced by a different single file. Here /usr/bin/dpkg (dpkg's) stands for it, in check mode."""
    from tests.ansible.runner import run_playbook

    _need("ansible-playbook")
    if shutil.which("dpkg-query") is None:
        pytest.skip("needs dpkg")
    single = tmp_path / "hostagent-0.1.0-linux-x86_64"
    single.write_bytes(b"not dpkg")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[agents]\nh1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    extra = {"deepflow_agent_controller_ips": ["127.0.0.1"], "deepflow_agent_hostagent_file": str(single),
             "deepflow_agent_hostagent_sha256": hashlib.sha256(single.read_bytes()).hexdigest(),
             "deepflow_agent_hostagent_path": "/usr/bin/dpkg"}
    run = run_playbook(inventory, extra, "--check", "--tags", "hostagent")
    refusal = run.task("deepflow_agent : Refuse to replace a packaged hostagent")
    assert run.rc != 0 and refusal["status"] == "failed", run.log
    assert refusal["result"]["msg"].startswith("/usr/bin/dpkg belongs to the package dpkg and differs from"), refusal
    # The package's own file (same SHA-256) is no reason to stop.
    same = dict(extra, deepflow_agent_hostagent_sha256=hashlib.sha256(Path("/usr/bin/dpkg").read_bytes()).hexdigest())
    run = run_playbook(inventory, same, "--check", "--tags", "hostagent")
    assert run.task("deepflow_agent : Refuse to replace a packaged hostagent")["status"] == "skipped", run.log


def test_role_tasks_pass_only_options_the_module_documents():
    """The role calls the collection's module by its FQCN, with only the options its DOCUMENTATION has."""
    documented = set(yaml.safe_load(_module().DOCUMENTATION)["options"])
    calls = []
    for path in sorted((ROLE / "tasks").glob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            if FQCN in task:
                calls.append(path.name)
                unknown = set(task[FQCN]) - documented
                assert not unknown, f"{path.name}: {task['name']}: unknown options {sorted(unknown)}"
    assert calls == ["converge.yml", "k8s_sync.yml", "k8s_sync.yml", "uninstall.yml"], calls


def test_module_documentation_matches_its_argument_spec():
    mod = _module()
    doc = yaml.safe_load(mod.DOCUMENTATION)
    # An unquoted ": " turns a line into a mapping, and ansible-doc fails for every user.
    assert all(isinstance(line, str) for line in doc["description"]), doc["description"]
    documented = doc["options"]
    assert set(documented) == set(mod.ARGUMENT_SPEC)
    for name, spec in mod.ARGUMENT_SPEC.items():
        doc = documented[name]
        assert (doc["type"], doc.get("default"), doc.get("choices")) == \
               (spec["type"], spec.get("default"), spec.get("choices")), name


def test_module_options_follow_the_cli_settings_table():
    """Each install setting is a module option of the matching type, passed by its own flag."""
    from hostagent.options import INSTALL_SETTINGS

    mod = _module()
    types = {"list": "list", "int": "int", "float": "float", "str": ("str", "path")}
    flags = dict(mod.INSTALL_FLAGS)
    for s in INSTALL_SETTINGS:
        spec = mod.ARGUMENT_SPEC[s.name]
        assert spec["type"] in types[s.type], (s.name, spec)
        assert "default" not in spec or spec["default"] in ([], None), f"{s.name}: the CLI owns the default"
        if s.type != "list":
            assert flags[s.name] == s.flag, s.name


def test_module_k8s_sync_options_follow_the_cli_settings_table():
    """Each k8s-sync install setting is a module option passed by its own flag (switches both ways)."""
    from hostagent.options import K8S_SYNC_SETTINGS

    mod = _module()
    types = {"list": ("list",), "int": ("int",), "float": ("float",), "str": ("str", "path"), "bool": ("bool",)}
    flags = dict(mod.K8S_SYNC_FLAGS)
    switches = {name: (on, off) for name, on, off in mod.K8S_SYNC_SWITCHES}
    for s in K8S_SYNC_SETTINGS:
        spec = mod.ARGUMENT_SPEC[s.name]
        assert spec["type"] in types[s.type], (s.name, spec)
        assert "default" not in spec or spec["default"] in ([], None), f"{s.name}: the CLI owns the default"
        if s.type == "bool":
            assert switches[s.name] == (s.flag, "--no-" + s.flag[2:]), s.name
        elif s.type != "list":
            assert flags[s.name] == s.flag, s.name
    params = {name: spec.get("default") for name, spec in mod.ARGUMENT_SPEC.items()}
    params.update(component="k8s-sync", command="install", controller_ips=["10.0.0.1"], kubeconfig="/k", tls=False,
                  cluster_id="", caps="ebpf", memory_mib=512)
    # Agent flags never leak into k8s-sync, and an unset switch is left to the CLI.
    assert mod.build_argv(params, dry_run=True) == [
        "/usr/sbin/hostagent", "k8s-sync", "install", "--controller-ip", "10.0.0.1", "--no-tls", "--kubeconfig", "/k",
        "--dry-run", "--yes", "--json"]
    assert mod.build_argv(dict(params, command="uninstall", keep_logs=True), dry_run=False) == [
        "/usr/sbin/hostagent", "k8s-sync", "uninstall", "--yes", "--json"]


def test_galaxy_urls_are_the_projects():
    """One home for every artifact: the collection's URLs are pyproject's (what the wheel and packages carry)."""
    import tomllib

    urls = tomllib.loads((ANSIBLE_DIR.parent / "pyproject.toml").read_text())["project"]["urls"]
    galaxy = yaml.safe_load((ANSIBLE_DIR / "galaxy.yml").read_text())
    assert galaxy["repository"] == galaxy["homepage"] == urls["Source"] == urls["Homepage"]
    assert galaxy["issues"] == urls["Issues"]
    assert galaxy["documentation"].startswith(urls["Source"] + "/")
