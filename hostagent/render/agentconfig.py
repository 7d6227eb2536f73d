"""The agent's static config file, emitted from data as YAML every reader types as meant."""
from __future__ import annotations

from typing import Any, Optional

from hostagent import paths

HEADER = "# Managed by hostagent: `hostagent uninstall` restores what was here before.\n"


def config_data(controller_ips: tuple[str, ...], controller_port: int, cluster_id: Optional[str],
                agent_group_id: Optional[str], team_id: Optional[str] = None) -> dict[str, Any]:
    data: dict[str, Any] = {"controller-ips": list(controller_ips), "controller-port": controller_port}
    if cluster_id:
        data["kubernetes-cluster-id"] = cluster_id
    if agent_group_id:
        data["vtap-group-id-request"] = agent_group_id
    if team_id:
        data["team-id"] = team_id
    data["log-file"] = paths.LOG_FILE
    return data


def render(data: dict[str, Any]) -> str:
    from hostagent.deepflow import yaml12

    return HEADER + yaml12.dump(data)
