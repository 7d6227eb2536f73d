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
# A root-only directory: no other user can create, hold or replace the lock.
RUN_DIR = "/run/hostagent"
LOCK_FILE = RUN_DIR + "/lock"
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_NAME = "deepflow-agent"  # hard-coded by the agent (cgroups-rs builder name)
# Where hostagent writes; a killed run's temp files there are removed by the next run.
WRITTEN_DIRS = (os.path.dirname(AGENT_BINARY), CONFIG_DIR, os.path.dirname(UNIT_FILE), os.path.dirname(STATE_DIR),
                STATE_DIR, BACKUP_DIR)
# What install creates, for a manifest that cannot be read any more.
INSTALLED_PATHS = (AGENT_BINARY, CONFIG_FILE, LOG_DIR, UNIT_FILE, STATE_DIR)
