"""deploy/hostagent-alerts.yaml: valid for Prometheus (`promtool check rules`), naming only metrics that
hostagent emits, and each alert firing for the host it is about and no other (`promtool test rules` fed
with what metrics.render writes for three hosts: a broken one, one whose agent is down, a healthy one)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from hostagent import metrics
from tests import promtool

RULES = Path(__file__).resolve().parents[2] / "deploy" / "hostagent-alerts.yaml"

PROC = {"pid": 7, "uid": 998, "CapEff": ["cap_net_raw"], "as_user": True, "caps_as_installed": True, "in_agent_cgroup": True}
BASE = {"installed": True, "init": "systemd", "cgroup_mode": "v2", "user": "deepflow", "caps": ["cap_net_raw"],
        "processes": [PROC], "steps": [{"id": "service-definition:/etc/systemd/system/deepflow-agent.service", "ok": True}],
        "drift": [], "problems": [], "limits": {"in_force": {"max_millicpus": 1000, "max_memory": 768}, "agree": True}}
SERVER = {"reachable": True, "registered": True, "in_group": True, "group_id": "g-0123456789", "exceptions": [],
          "state": 1, "name": "h", "last_sync": 0.0}
HOSTS = {
    "broken": dict(BASE, processes=[dict(PROC, uid=0, as_user=False, caps_as_installed=False, in_agent_cgroup=False)],
                   drift=["x"], server=dict(SERVER, exceptions=[8192])),
    "down": dict(BASE, processes=[]),
    "healthy": dict(BASE, server=SERVER),
}
FIRING = {"DeepflowAgentRunsAsRoot": "broken", "DeepflowAgentNotItsUser": "broken",
          "DeepflowAgentCapabilitiesDiffer": "broken", "DeepflowAgentOutOfItsCgroup": "broken",
          "DeepflowAgentDrift": "broken", "DeepflowAgentNotReporting": "broken",
          "DeepflowAgentServerExceptions": "broken", "HostagentMetricsStale": "broken", "DeepflowAgentDown": "down"}
TIMESTAMPS = ("hostagent_doctor_last_run_timestamp_seconds", "hostagent_server_agent_last_sync_timestamp_seconds")


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def series() -> list[dict]:
    """Each host's textfile as promtool input series over 30 minutes, with node_exporter's labels. The
    broken host's clocks stopped at 0 (time() goes on); the others write every minute."""
    out = []
    for host, report in HOSTS.items():
        for line in metrics.render(report, now=0).splitlines():
            if line.startswith("#"):
                continue
            key, value = line.rsplit(" ", 1)
            name, _, labels = key.partition("{")
            labels = f'{{{labels[:-1] + "," if labels else ""}instance="{host}",job="node"}}'
            fresh = name in TIMESTAMPS and host != "broken"
            out.append({"series": name + labels, "values": "0+60x30" if fresh else f"{value}x30"})
    return out


def test_rules_are_valid_prometheus_rules():
    checked = promtool.check("rules", str(RULES))
    assert checked.returncode == 0, checked.stdout
    assert {r["alert"] for r in rules()} == set(FIRING)


def test_rules_name_only_metrics_hostagent_emits():
    emitted = {line.split()[2] for report in HOSTS.values() for line in metrics.render(report).splitlines()
               if line.startswith("# TYPE")}
    named = {m for r in rules() for m in re.findall(r"\bhostagent_[a-z_]+", r["expr"])}
    assert named and named <= emitted, named - emitted


def test_each_alert_fires_for_its_host_only(tmp_path):
    bare = {"groups": [{"name": "hostagent", "rules": [{k: v for k, v in r.items() if k != "annotations"}
                                                        for r in rules()]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(bare))
    expected = []
    for alert, host in FIRING.items():
        labels = {"severity": next(r["labels"]["severity"] for r in rules() if r["alert"] == alert),
                  "instance": host, "job": "node"}
        if alert == "DeepflowAgentNotItsUser":
            labels["user"] = "deepflow"
        expected.append({"eval_time": "25m", "alertname": alert, "exp_alerts": [{"exp_labels": labels}]})
    test = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series(), "alert_rule_test": expected}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    proc = promtool.run("test", "rules", str(tmp_path / "test.yaml"))
    assert proc.returncode == 0, proc.stdout
