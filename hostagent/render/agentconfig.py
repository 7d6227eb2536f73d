"""The agent's static config file, emitted from data as YAML every reader types as meant."""
from __future__ import annotations

from typing import Any, Optional

from hostagent.host import paths

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
    """pyyaml's output (which quotes what YAML 1.1 would misread), plus quotes on the strings a YAML 1.2
    reader would take for a number, bool or null (`1e3`, `0o17`); IPs stay plain, so a config written
    before reads back byte for byte."""
    import yaml

    from hostagent.deepflow import yaml12

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "'" if yaml12.go_yaml_tag(value) != "str" else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return HEADER + yaml.dump(data, Dumper=Dumper, default_flow_style=False, sort_keys=False)
