"""Where things live on a host, as the host names them: callers that touch one go through
`host.current().path(...)`, which puts them under a test's temp root. HOSTAGENT_STATE_DIR moves the
state dir for read-only subprocess tests that cannot be handed a Host."""
from __future__ import annotations

import os

AGENT_BINARY = "/usr/sbin/deepflow-agent"
# With remote upgrades allowed the agent runs from here: a dir its user may write (root:<group> 0770),
# where the agent's own upgrade writes <exe>.test and renames it over <exe>, as DeepFlow's does.
AGENT_UPGRADE_DIR = "/var/lib/deepflow-agent"
AGENT_UPGRADABLE = AGENT_UPGRADE_DIR + "/deepflow-agent"
CONFIG_DIR = "/etc/deepflow-agent"
CONFIG_FILE = CONFIG_DIR + "/deepflow-agent.yaml"
LOG_DIR = "/var/log/deepflow-agent"
LOG_FILE = LOG_DIR + "/deepflow-agent.log"
# The service's name under every init; its definition (unit, init script, inittab line) is the
# service manager's to place (hostagent.host.services).
SERVICE = "deepflow-agent"
SYSTEMD_UNIT_DIR = "/etc/systemd/system"
INITD_DIR = "/etc/init.d"
INITTAB = "/etc/inittab"
SYSV_SCRIPT = CONFIG_DIR + "/hostagent-exec"  # what the agent's inittab line runs
STATE_DIR = os.environ.get("HOSTAGENT_STATE_DIR", "/var/lib/hostagent")
MANIFEST = STATE_DIR + "/manifest.json"
BACKUP_DIR = STATE_DIR + "/backup"
# install --metrics-textfile: a timer runs this oneshot service, which writes the textfile.
METRICS_SERVICE = "hostagent-metrics.service"
METRICS_TIMER = "hostagent-metrics.timer"
# `hostagent k8s-sync install`: its own service, user, files and manifest beside the agent's.
K8S_SYNC_SERVICE = "hostagent-k8s-sync"
K8S_SYNC_CONFIG_DIR = "/etc/hostagent-k8s-sync"
K8S_SYNC_MANIFEST = STATE_DIR + "/k8s-sync.json"
MANIFESTS = (MANIFEST, K8S_SYNC_MANIFEST)
# A root-only directory: no other user can create, hold or replace the lock.
RUN_DIR = "/run/hostagent"
LOCK_FILE = RUN_DIR + "/lock"
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_NAME = "deepflow-agent"  # hard-coded by the agent (cgroups-rs builder name)
# Where hostagent writes; a killed run's temp files there are removed by the next run.


def agent_binary_for(remote_upgrade: str) -> str:
    """Where the service runs the agent from in a remote-upgrade mode (allow | deny)."""
    return AGENT_UPGRADABLE if remote_upgrade == "allow" else AGENT_BINARY


WRITTEN_DIRS = (os.path.dirname(AGENT_BINARY), AGENT_UPGRADE_DIR, CONFIG_DIR, SYSTEMD_UNIT_DIR, INITD_DIR, "/etc",
                os.path.dirname(STATE_DIR), STATE_DIR, BACKUP_DIR, K8S_SYNC_CONFIG_DIR)
# What install creates, for a manifest that cannot be read any more.
INSTALLED_PATHS = (AGENT_BINARY, AGENT_UPGRADE_DIR, CONFIG_FILE, LOG_DIR, SYSTEMD_UNIT_DIR + "/" + SERVICE + ".service",
                   INITD_DIR + "/" + SERVICE, SYSTEMD_UNIT_DIR + "/" + METRICS_SERVICE,
                   SYSTEMD_UNIT_DIR + "/" + METRICS_TIMER, STATE_DIR)
