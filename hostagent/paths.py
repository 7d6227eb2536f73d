"""Well-known paths. Tests point HOSTAGENT_STATE_DIR elsewhere only for read-only unit tests."""
from __future__ import annotations

import os

AGENT_BINARY = "/usr/sbin/deepflow-agent"
CONFIG_DIR = "/etc/deepflow-agent"
CONFIG_FILE = CONFIG_DIR + "/deepflow-agent.yaml"
LOG_DIR = "/var/log/deepflow-agent"
LOG_FILE = LOG_DIR + "/deepflow-agent.log"
UNIT_NAME = "deepflow-agent.service"
UNIT_FILE = "/etc/systemd/system/" + UNIT_NAME
STATE_DIR = os.environ.get("HOSTAGENT_STATE_DIR", "/var/lib/hostagent")
MANIFEST = STATE_DIR + "/manifest.json"
BACKUP_DIR = STATE_DIR + "/backup"
LOCK_FILE = "/run/lock/hostagent.lock" if os.path.isdir("/run/lock") else "/run/hostagent.lock"
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_NAME = "deepflow-agent"  # hard-coded by the agent (cgroups-rs builder name)
