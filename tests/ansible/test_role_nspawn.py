"""The role from the release's collection tarball against a fresh Debian 12 host (systemd-nspawn),
over SSH on 127.0.0.1, shipping the single file (the default route; no venv on the host).

The collection is installed offline from dist/hostagent-deepflow-<v>.tar.gz into a temp dir and the
play calls hostagent.deepflow.deepflow_agent from there (no roles_path, no checkout link).

snapshot → --check on the fresh host (would change, nothing changes) → converge (the file shipped,
checked against SHA256SUMS on the host) → testinfra host suite (tests/system/test_host_state.py) →
converge again (changed=0) → --check (changed=0) → --check with another memory limit and controller
(would change, unit and config diffs shown, nothing changes) → the host's copy altered: a file that
does not match its SHA-256 is refused on the host, the right one repairs the copy → the wheelhouse
route (the option): a venv the role installs, only the unit changes → back to the file, only the unit
changes → state=absent (removing the file) → removing the venv → absent again (changed=0) → snapshot
equal to the first. Every run ends with the fleet summary (hostagent doctor), checked on the way.

Then k8s-sync through the role on the same host, and the upgrade from the previous release's collection.

The host has python3 (Ansible's modules need it; hostagent does not use it).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible.runner import Host, Run, ansible_bin, install_collection, run_playbook, write_inventory
from tests.hostsnap import diff as snapshot_diff
from tests.system.conftest import comparable

pytestmark = [pytest.mark.nspawn, pytest.mark.slow, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
NAME = "h1"
SECOND_VENV = "/opt/hostagent-role"
FILE_ON_HOST = "/usr/sbin/hostagent"  # the packages' path, the role's default
# Where the role (v0.1.0) shipped it before.
FORMER_FILE = "/usr/local/sbin/hostagent"
REMOVE_FORMER = "hostagent.deepflow.deepflow_agent : Remove the single file from the role's former path"
SHIP_FILE = "hostagent.deepflow.deepflow_agent : Ship the hostagent single file"
UNIT = "/etc/systemd/system/deepflow-agent.service"
CONFIG = "/etc/deepflow-agent/deepflow-agent.yaml"
CONVERGE = "hostagent.deepflow.deepflow_agent : Converge the agent with hostagent"
UNINSTALL = "hostagent.deepflow.deepflow_agent : Remove the agent with hostagent"
SUMMARY = "hostagent.deepflow.deepflow_agent : Fleet summary"
K8S_CONVERGE = "hostagent.deepflow.deepflow_agent : Converge k8s-sync with hostagent"
K8S_REMOVE = "hostagent.deepflow.deepflow_agent : Remove k8s-sync with hostagent"
K8S_SHIP = "hostagent.deepflow.deepflow_agent : Ship the kubeconfig for k8s-sync"
K8S_UNIT = "/etc/systemd/system/hostagent-k8s-sync.service"
INSTALL_PHASE = (
    "hostagent.deepflow.deepflow_agent : Ship the wheelhouse",
    "hostagent.deepflow.deepflow_agent : Create the hostagent venv",
    "hostagent.deepflow.deepflow_agent : Install hostagent into the venv",
)


def _requirements() -> str:
    from tests.images.nspawn import missing_requirement

    if missing_requirement():
        return missing_requirement()
    if ansible_bin("ansible-playbook") is None:
        return "ansible-core not installed (tests/ansible/requirements.txt)"
    return ""


@pytest.fixture(scope="module")
def env(tmp_path_factory, dist):
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    from tests.dist import collection_in, single_file_in
    from tests.fixtures.build import build_agent_double
    from tests.images.nspawn import nspawn_host

    tmp = tmp_path_factory.mktemp("ansible")
    collections = install_collection(collection_in(dist), tmp / "collections")
    double = build_agent_double()
    with nspawn_host(wheelhouse=False, ssh=True, double=False, hostsnap=False) as host:
        assert host.ssh_port is not None
        inventory = write_inventory([Host(NAME, host.ssh_port, host.workdir / "id_ed25519")], tmp / "hosts.ini")
        base = {
            "deepflow_agent_controller_ips": ["127.0.0.1"],
            "deepflow_agent_binary_src": str(double),
            # Its SHA-256 comes from dist/SHA256SUMS beside it.
            "deepflow_agent_hostagent_file": str(single_file_in(dist)),
        }
        yield host, inventory, base, collections, tmp


def play(inventory: Path, extra: dict, *args: str, collections: Path) -> Run:
    run = run_playbook(inventory, extra, *args, collections=collections)
    assert run.rc == 0 and NAME in run.stats, f"ansible-playbook {' '.join(args)} rc={run.rc}:\n{run.log}"
    print(f"ansible-playbook {' '.join(args) or '(apply)'}: {run.seconds:.1f}s, changed={run.changed(NAME)}")
    return run


def summary(run: Run) -> dict:
    """The fleet summary's table (one debug task for the play), as {host: {column: cell}}."""
    lines = run.task(SUMMARY)["result"]["msg"]
    header = lines[0]
    names = ["HOST", "STATE", "USER", "CAPS", "CGROUP", "DRIFT", "SERVER GROUP"]
    starts = [header.index(n) for n in names] + [None]
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:])]
        rows[cells[0]] = dict(zip(names, cells))
    return rows


def snapshot(host) -> dict:
    return comparable(host.snapshot())


def host_suite(host) -> None:
    """The shared testinfra suite (tests/system/test_host_state.py) on what the role installed."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/system/test_host_state.py", "-q", "-p", "no:cacheprovider",
         f"--hosts={host.testinfra_host}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"host suite failed:\n{proc.stdout}\njournal:\n{host.journal()}"


def sha256(host, path: str) -> str:
    return hashlib.sha256(host.get(path).encode()).hexdigest()


def unit_only(run: Run) -> set:
    """The hostagent steps a converge applied."""
    return {st["id"] for st in run.task(CONVERGE)["result"]["steps"] if st["status"] == "applied"}


def test_converge_check_diff_absent(env):
    host, inventory, base, collections, tmp = env
    figures: dict = {}

    def run(extra: dict, *args: str) -> Run:
        return play(inventory, extra, *args, collections=collections)

    before = snapshot(host)

    # Check mode on a fresh host: everything would change, nothing is written. hostagent is not on
    # the host yet, so it is not asked for a plan.
    r = run(base, "--check", "--diff")
    assert r.changed_tasks(NAME) == [
        SHIP_FILE, "hostagent.deepflow.deepflow_agent : Make the directory the agent binary is shipped into",
        "hostagent.deepflow.deepflow_agent : Ship the agent binary", CONVERGE]
    assert "is not on the host yet" in r.task(CONVERGE)["result"]["msg"]
    assert summary(r)[NAME]["STATE"] == "hostagent not found", r.task(SUMMARY)
    assert snapshot_diff(before, snapshot(host)) == []

    # Converge: the file is shipped (no venv, no pip), and hostagent runs from it.
    r = run(base)
    figures["fresh"] = r.seconds
    assert r.task(SHIP_FILE)["result"]["changed"] is True
    assert r.task(CONVERGE)["result"]["changed"] is True
    assert host.run(f"stat -c '%U:%G %a' {FILE_ON_HOST}").check().stdout.strip() == "root:root 755"
    assert host.run("test -e /opt/hostagent").rc == 1
    assert f"ExecStart={FILE_ON_HOST} exec --prepared " in host.get(UNIT)
    # The summary, from doctor: running as deepflow in its cgroup, no drift (the controller 127.0.0.1:30035
    # is not listening: doctor counts it as a problem).
    row = summary(r)[NAME]
    assert row["STATE"].startswith("running") and row["USER"] == "deepflow" and row["DRIFT"] == "0", row
    assert row["CGROUP"].endswith("/deepflow-agent") and row["CAPS"] not in ("", "-"), row
    host_suite(host)

    r = run(base)
    figures["converged"] = r.seconds
    assert r.changed(NAME) == 0, r.changed_tasks(NAME)
    steps = r.task(CONVERGE)["result"]["steps"]
    assert steps and {s["status"] for s in steps} == {"unchanged"}, steps

    r = run(base, "--check", "--diff")
    assert r.changed(NAME) == 0, r.changed_tasks(NAME)
    assert r.task(CONVERGE)["result"]["report"]["dry_run"] is True
    assert summary(r)[NAME]["USER"] == "deepflow"  # check mode too: doctor only reads

    # Another limit and a second controller in check mode: reported with the unit's and the
    # config's diffs, not applied.
    unit_before, config_before = sha256(host, UNIT), sha256(host, CONFIG)
    changed = dict(base, deepflow_agent_memory_mib=512, deepflow_agent_controller_ips=["127.0.0.1", "127.0.0.2"])
    r = run(changed, "--check", "--diff")
    assert r.changed_tasks(NAME) == [CONVERGE]
    assert f"+++ {UNIT}" in r.log and "+ExecStart=" in r.log and "--memory-mib 512" in r.log, r.log
    assert f"+++ {CONFIG}" in r.log and "127.0.0.2" in r.log, r.log
    assert (sha256(host, UNIT), sha256(host, CONFIG)) == (unit_before, config_before)

    # The host's copy changed behind the role's back (one byte appended): the next converge sees it
    # (the SHA-256 of the host's copy is checked at every run). A controller file that is not the one
    # SHA256SUMS names is refused on the host, and the host's copy stays as it was; a converge with
    # the right file repairs it, changing nothing else.
    host.run(f"printf x >> {FILE_ON_HOST}").check()
    tampered = host.run(f"sha256sum {FILE_ON_HOST}").check().stdout
    bad = tmp / "bad" / Path(base["deepflow_agent_hostagent_file"]).name
    bad.parent.mkdir()
    bad.write_bytes(Path(base["deepflow_agent_hostagent_file"]).read_bytes() + b"tampered")
    expected = [line.split()[0] for line in (Path(base["deepflow_agent_hostagent_file"]).parent / "SHA256SUMS")
                .read_text().splitlines() if line.endswith("  " + bad.name)][0]
    r = run_playbook(inventory, dict(base, deepflow_agent_hostagent_file=str(bad),
                                     deepflow_agent_hostagent_sha256=expected), collections=collections)
    assert r.rc != 0 and r.task(SHIP_FILE)["status"] == "failed", r.log
    assert host.run(f"sha256sum {FILE_ON_HOST}").check().stdout == tampered
    r = run(base)
    assert r.changed_tasks(NAME) == [SHIP_FILE], r.changed_tasks(NAME)
    assert host.run(f"sha256sum {FILE_ON_HOST}").check().stdout.split()[0] == expected

    # The wheelhouse route (the option): the role installs a venv from it, and hostagent (now run
    # from that venv) rewrites only the unit's ExecStart. Then back to the file: only the unit again.
    from tests.images.wheelhouse import build_wheelhouse

    wheels = build_wheelhouse(tmp / "wheelhouse")
    second = {k: v for k, v in base.items() if k != "deepflow_agent_hostagent_file"}
    second.update(deepflow_agent_hostagent_wheelhouse=str(wheels), deepflow_agent_hostagent_venv=SECOND_VENV)
    r = run(second)
    assert all(r.task(t)["result"].get("changed") for t in INSTALL_PHASE), r.changed_tasks(NAME)
    assert r.task(CONVERGE)["result"]["changed"] is True
    assert f"ExecStart={SECOND_VENV}/bin/python3" in host.get(UNIT)
    venv_steps = unit_only(r)
    host.run("systemctl is-active --quiet deepflow-agent").check()
    r = run(second)
    assert r.changed(NAME) == 0, r.changed_tasks(NAME)
    r = run(base)
    assert r.changed_tasks(NAME) == [CONVERGE]
    assert unit_only(r) == venv_steps and all("unit" in i or "service" in i for i in venv_steps), venv_steps
    assert f"ExecStart={FILE_ON_HOST} exec --prepared " in host.get(UNIT)
    host.run("systemctl is-active --quiet deepflow-agent").check()

    # Take it all back: the agent and the shipped file (with its cache), then the venv.
    r = run(dict(base, deepflow_agent_state="absent", deepflow_agent_hostagent_remove=True))
    removed = r.task(UNINSTALL)["result"]
    assert removed["changed"] is True and removed["report"]["command"] == "uninstall", removed
    assert host.run(f"test -e {FILE_ON_HOST} || test -e /var/cache/hostagent").rc == 1
    assert host.run("test -e /var/lib/hostagent-ansible").rc == 1
    r = run(dict(second, deepflow_agent_state="absent", deepflow_agent_hostagent_remove=True))
    assert r.changed_tasks(NAME) == ["hostagent.deepflow.deepflow_agent : Remove the hostagent venv"], r.changed_tasks(NAME)
    assert host.run(f"test -e {SECOND_VENV}").rc == 1

    r = run(dict(base, deepflow_agent_state="absent"))
    assert r.changed(NAME) == 0, r.changed_tasks(NAME)
    assert summary(r)[NAME]["STATE"] == "hostagent not found"
    assert snapshot_diff(before, snapshot(host)) == []
    print(f"\nrole converge from the collection with the single file: fresh {figures['fresh']:.1f} s, "
          f"converged {figures['converged']:.1f} s")


def kubeconfig_on_host(host, api, token: str) -> None:
    """/root/k8s/kubeconfig for the fake apiserver, naming its CA and token files beside it (0600)."""
    host.put("/root/k8s/ca.crt", Path(api.tls["ca"]).read_bytes(), 0o600)
    host.put("/root/k8s/token", token + "\n", 0o600)
    host.put("/root/k8s/kubeconfig", f"""apiVersion: v1
kind: Config
current-context: fake
clusters: [{{name: fake, cluster: {{server: "{api.url}", certificate-authority: ca.crt}}}}]
users: [{{name: sa, user: {{tokenFile: token}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: sa}}}}]
""", 0o600)


REFUSE_REMOVE = "hostagent.deepflow.deepflow_agent : Refuse to remove hostagent while k8s-sync runs from it"


def test_role_k8s_sync_from_the_single_file(env, tmp_path):
    """k8s-sync through the role, from the single file the role ships: the kubeconfig from the controller
    (self-contained, its token never in the play's output, --diff included); check mode on the fresh host
    changes nothing; converge (reports arrive); again and --check --diff: changed=0; a kubeconfig already
    on the host (files it names, flattened by hostagent); then absent for k8s-sync, the agent and the file
    in one run: the host is as it was."""
    import base64

    from tests.fixtures.fake_apiserver import FakeApiserver, small_cluster
    from tests.fixtures.fake_deepflow_grpc import FakeDeepflowGrpc

    host, inventory, base, collections, _ = env
    before = snapshot(host)
    token = "role-k8s-sync-secret-token-4f1d"
    api = FakeApiserver(tls_dir=str(tmp_path / "tls"), token=token).start()
    small_cluster(api, 2)
    df = FakeDeepflowGrpc().start()
    try:
        assert api.tls is not None
        ca = Path(api.tls["ca"]).read_bytes()
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(f"""apiVersion: v1
kind: Config
current-context: fake
clusters: [{{name: fake, cluster: {{server: "{api.url}", certificate-authority-data: {base64.b64encode(ca).decode()}}}}}]
users: [{{name: sa, user: {{token: {token}}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: sa}}}}]
""")
        k8s = dict(base, deepflow_agent_k8s_sync_state="present", deepflow_agent_k8s_sync_kubeconfig_src=str(kubeconfig),
                   deepflow_agent_k8s_sync_cluster_id="d-role00001", deepflow_agent_k8s_sync_interval=5,
                   deepflow_agent_controller_port=df.port)

        def run(extra: dict, *args: str) -> Run:
            r = play(inventory, extra, *args, "-v", collections=collections)
            assert token not in r.log and token not in json.dumps(r.tasks), "the kubeconfig's token was printed"
            return r

        r = run(k8s, "--check", "--diff")
        assert K8S_SHIP in r.changed_tasks(NAME) and K8S_CONVERGE in r.changed_tasks(NAME), r.changed_tasks(NAME)
        assert snapshot_diff(before, snapshot(host)) == []

        r = run(k8s, "--diff")
        assert r.task(K8S_CONVERGE)["result"]["changed"] is True
        assert r.task(K8S_SHIP)["result"].get("censored"), r.task(K8S_SHIP)  # no_log
        assert f"ExecStart={FILE_ON_HOST} k8s-sync run " in host.get(K8S_UNIT)
        df.wait(lambda rs: len(rs) >= 1, timeout=90)
        host.run("systemctl is-active --quiet hostagent-k8s-sync").check()

        r = run(k8s)
        assert r.changed(NAME) == 0, r.changed_tasks(NAME)
        r = run(k8s, "--check", "--diff")
        assert r.changed(NAME) == 0, r.changed_tasks(NAME)

        # Already on the host, naming its CA and token files: hostagent embeds them; the service keeps running.
        kubeconfig_on_host(host, api, token)
        on_host = dict(k8s, deepflow_agent_k8s_sync_kubeconfig_src="", deepflow_agent_k8s_sync_kubeconfig="/root/k8s/kubeconfig")
        r = run(on_host, "--diff")
        assert r.task(K8S_CONVERGE)["status"] == "ok", r.log
        assert host.run("test -e /var/lib/hostagent-ansible-k8s-sync").rc == 1  # no stale copy of the credentials
        host.run("systemctl is-active --quiet hostagent-k8s-sync").check()
        seen = len(df.reports)
        df.wait(lambda rs: len(rs) > seen, timeout=90)

        # All of it back in one run: k8s-sync first, then the agent, then the file it ran from.
        r = run(dict(on_host, deepflow_agent_k8s_sync_state="absent", deepflow_agent_state="absent",
                     deepflow_agent_hostagent_remove=True))
        assert r.task(K8S_REMOVE)["result"]["changed"] is True
        assert r.task(REFUSE_REMOVE)["status"] == "skipped"
    finally:
        df.stop()
        api.close()
    host.run("rm -rf /root/k8s").check()
    assert snapshot_diff(before, snapshot(host)) == []


def test_hostagent_is_not_removed_from_under_k8s_sync(env, tmp_path):
    """k8s-sync installed with the venv the role's wheelhouse route made runs from that venv (the single
    file does not carry its packages): absent with hostagent_remove is refused before anything changes
    and the service keeps running; once `hostagent k8s-sync uninstall` has run, the same play removes the
    agent and the venv, leaving the host as it was."""
    from tests.fixtures.fake_apiserver import FakeApiserver, small_cluster
    from tests.fixtures.fake_deepflow_grpc import FakeDeepflowGrpc
    from tests.images.wheelhouse import build_wheelhouse

    host, inventory, base, collections, _ = env
    before = snapshot(host)
    venv_route = {k: v for k, v in base.items() if k != "deepflow_agent_hostagent_file"}
    venv_route.update(deepflow_agent_hostagent_wheelhouse=str(build_wheelhouse(tmp_path / "wheelhouse")),
                      deepflow_agent_hostagent_venv=SECOND_VENV)
    absent = dict(venv_route, deepflow_agent_state="absent", deepflow_agent_hostagent_remove=True)
    play(inventory, venv_route, collections=collections)
    api = FakeApiserver(tls_dir=str(tmp_path / "tls")).start()
    small_cluster(api, 2)
    df = FakeDeepflowGrpc().start()
    try:
        assert api.tls is not None
        kubeconfig_on_host(host, api, "test-token")
        host.run(f"{SECOND_VENV}/bin/hostagent k8s-sync install --controller-ip 127.0.0.1 --controller-port {df.port} "
                 "--cluster-id d-role00001 --kubeconfig /root/k8s/kubeconfig --yes --json", timeout=180).check()
        assert f"ExecStart={SECOND_VENV}/bin/python" in host.get("/etc/systemd/system/hostagent-k8s-sync.service")
        df.wait(lambda rs: len(rs) >= 1, timeout=60)
        pid = host.run("systemctl show -P MainPID hostagent-k8s-sync").check().stdout.strip()
        installed = snapshot(host)

        r = run_playbook(inventory, absent, collections=collections)
        assert r.rc != 0 and r.task(REFUSE_REMOVE)["status"] == "failed", r.log
        assert f"Run `{SECOND_VENV}/bin/hostagent k8s-sync uninstall` first" in r.task(REFUSE_REMOVE)["result"]["msg"]
        assert r.changed_tasks(NAME) == [] and snapshot_diff(installed, snapshot(host)) == []
        assert host.run("systemctl show -P MainPID hostagent-k8s-sync").check().stdout.strip() == pid

        host.run(f"{SECOND_VENV}/bin/hostagent k8s-sync uninstall --yes --json", timeout=180).check()
    finally:
        df.stop()
        api.close()
    host.run("rm -rf /root/k8s").check()
    r = play(inventory, absent, collections=collections)
    assert r.task(REFUSE_REMOVE)["status"] == "skipped"
    assert host.run(f"test -e {SECOND_VENV}").rc == 1
    assert snapshot_diff(before, snapshot(host)) == []


def test_role_upgrades_hostagent_from_the_previous_release(env, tmp_path):
    """The previous release's collection (built from its git tag, tests/dist.py) with its single file
    installs the agent; this release's collection with this file: check mode says the file and the
    agent would change, without a plan, and changes nothing; the converge ships the file, hostagent changes at most the unit, the
    status is clean and the agent runs through the new launcher; converged again, nothing changes.
    (Before the module's executable_replaced, check mode showed the old hostagent's plan: nothing to do.)"""
    from tests.dist import previous_collection, previous_single_file
    from tests.system.test_nspawn_day2 import assert_clean_env
    from tests.system.test_nspawn_e2e import check_double, wait_agent

    host, inventory, base, collections, _ = env
    old_collections = install_collection(previous_collection(), tmp_path / "old-collections")
    old = dict(base, deepflow_agent_hostagent_file=str(previous_single_file()))
    before = snapshot(host)

    r = play(inventory, old, collections=old_collections)
    assert r.task(SHIP_FILE)["result"]["changed"] is True and r.task(CONVERGE)["result"]["changed"] is True
    first = wait_agent(host)
    check_double(host, first)
    installed = snapshot(host)

    # Check mode: the file would be shipped to the packages' path (v0.1.0 used another), and the old
    # copy removed once the unit calls the new one; the old hostagent's plan is not the new one's.
    assert host.run(f"test -x {FORMER_FILE}").rc == 0
    r = play(inventory, base, "--check", "--diff", collections=collections)
    assert r.changed_tasks(NAME) == [SHIP_FILE, CONVERGE, REMOVE_FORMER], r.changed_tasks(NAME)
    assert r.task(CONVERGE)["result"]["msg"] == f"{FILE_ON_HOST} is not on the host yet; no plan to show"
    assert snapshot_diff(installed, snapshot(host)) == []
    assert wait_agent(host)["pid"] == first["pid"]

    r = play(inventory, base, collections=collections)
    figures = r.seconds
    assert r.task(SHIP_FILE)["result"]["changed"] is True
    applied = unit_only(r)
    print(f"the converge with the new file applied {sorted(applied)}; agent pid {first['pid']} -> {wait_agent(host)['pid']}")
    assert {s.split(":")[0] for s in applied} <= {"service-definition", "service"}, applied
    assert host.run(f"test -e {FORMER_FILE}").rc == 1 and r.task(REMOVE_FORMER)["result"]["changed"] is True
    assert f"ExecStart={FILE_ON_HOST} exec --prepared " in host.get(UNIT)
    new = hashlib.sha256(Path(base["deepflow_agent_hostagent_file"]).read_bytes()).hexdigest()
    assert host.run(f"sha256sum {FILE_ON_HOST}").check().stdout.split()[0] == new
    rc, out, err = host.run(f"{FILE_ON_HOST} status --json")
    assert rc == 0 and json.loads(out)["data"]["drift"] == [], (out, err)
    host.run("systemctl restart deepflow-agent").check()
    after = wait_agent(host)
    check_double(host, after)
    assert_clean_env(after)
    r = play(inventory, base, collections=collections)
    assert r.changed(NAME) == 0, r.changed_tasks(NAME)

    play(inventory, dict(base, deepflow_agent_state="absent", deepflow_agent_hostagent_remove=True),
         collections=collections)
    assert snapshot_diff(before, snapshot(host)) == []
    print(f"role converge switching v0.1.0's file for this one: {figures:.1f} s")
