"""Run ansible-playbook from this checkout's ansible/ against inventory hosts, and read what happened.

Results come from tests/ansible/plugins/callback/record.py (JSON lines), the play log from the
default callback; both are kept for a failing test's message.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
PLAYBOOK = Path(__file__).resolve().parent / "fixtures" / "site.yml"
# The same play calling the role by its FQCN, for a collection installed from the release tarball.
COLLECTION_PLAYBOOK = Path(__file__).resolve().parent / "fixtures" / "site_collection.yml"
CALLBACKS = Path(__file__).resolve().parent / "plugins" / "callback"


def ansible_bin(name: str) -> Optional[str]:
    """The tool next to this interpreter (the test venv) first, then PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


@dataclass
class Host:
    """One inventory entry reachable over SSH (an NspawnHost's sshd on 127.0.0.1)."""
    name: str
    port: int
    key: Path
    extra: str = ""  # more inventory vars, "k=v k2=v2"

    def inventory_line(self) -> str:
        return (f"{self.name} ansible_host=127.0.0.1 ansible_port={self.port} ansible_user=root {self.extra} "
                f"ansible_ssh_private_key_file={self.key} ansible_python_interpreter=/usr/bin/python3 "
                "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                "-o LogLevel=ERROR'")


@dataclass
class Run:
    rc: int
    seconds: float
    log: str
    tasks: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def changed(self, host: str) -> int:
        return self.stats[host]["changed"]

    def task(self, name: str, host: Optional[str] = None) -> dict:
        """The last result of the task with this name (on this host)."""
        hits = [t for t in self.tasks if t["task"] == name and (host is None or t["host"] == host)]
        assert hits, f"no task {name!r} ran; tasks: {[t['task'] for t in self.tasks]}\n{self.log}"
        return hits[-1]

    def changed_tasks(self, host: str) -> list:
        return [t["task"] for t in self.tasks
                if t["host"] == host and t["status"] == "ok" and t["result"].get("changed")]


def write_inventory(hosts: Sequence[Host], path: Path) -> Path:
    path.write_text("[agents]\n" + "".join(h.inventory_line() + "\n" for h in hosts))
    return path


def install_collection(tarball: Path, dest: Path) -> Path:
    """`ansible-galaxy collection install --offline` of the release tarball into dest; returns dest."""
    galaxy = ansible_bin("ansible-galaxy") or "ansible-galaxy"
    env = dict(os.environ, ANSIBLE_GALAXY_SERVER="http://127.0.0.1:9/")  # offline: nothing to reach
    subprocess.run([galaxy, "collection", "install", "--offline", "-p", str(dest), str(tarball)],
                   check=True, capture_output=True, env=env)
    return dest


def run_playbook(inventory: Path, extra_vars: dict, *args: str, playbook: Path = PLAYBOOK,
                 forks: int = 5, timeout: float = 600, collections: Optional[Path] = None) -> Run:
    """collections: a dir the collection was installed into (install_collection); the play then uses
    the role and module from there only (no roles_path, no checkout link) by their FQCNs."""
    with tempfile.TemporaryDirectory(prefix="hostagent-ansible-") as tmp:
        record = Path(tmp) / "record.jsonl"
        vars_file = Path(tmp) / "vars.json"
        vars_file.write_text(json.dumps(extra_vars))
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
            ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
            ANSIBLE_CALLBACKS_ENABLED="record",
            ANSIBLE_LOCAL_TEMP=str(Path(tmp) / "local"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(Path(tmp) / "cp"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORKS=str(forks),
            HOSTAGENT_ANSIBLE_RECORD=str(record),
        )
        if collections is not None:
            env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_ROLES_PATH=str(Path(tmp) / "no-roles"))
            if playbook == PLAYBOOK:
                playbook = COLLECTION_PLAYBOOK
        cmd = [ansible_bin("ansible-playbook") or "ansible-playbook", "-i", str(inventory),
               "-e", f"@{vars_file}", *args, str(playbook)]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=ANSIBLE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        seconds = time.monotonic() - t0
        run = Run(proc.returncode, seconds, proc.stdout)
        if record.exists():
            for line in record.read_text().splitlines():
                obj = json.loads(line)
                if obj["kind"] == "stats":
                    run.stats = obj["hosts"]
                else:
                    run.tasks.append(obj)
        return run
