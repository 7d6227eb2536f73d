#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hostagent maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Run `hostagent [k8s-sync] install|uninstall --json` on the target and hand its report to Ansible."""
# Ansible's module boilerplate: this file runs in the target's Python, 2.7 or 3.6+ with ansible-core 2.16.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hostagent
short_description: Install or remove the non-root DeepFlow agent or k8s-sync by running the hostagent CLI
description:
  - Runs C(hostagent install --json) or C(hostagent uninstall --json) once (with I(component=k8s-sync),
    C(hostagent k8s-sync install|uninstall --json)) and reports C(changed) from the CLI's own JSON, so the
    role and the CLI never disagree.
  - In check mode it adds C(--dry-run), so the CLI plans and reports what would change, and nothing changes.
  - In diff mode the config and unit diffs come from the CLI's plan (C(--dry-run)). Outside check mode
    the module asks for that plan first, then runs the real command.
  - The module does no host work of its own.
version_added: "0.1.0"
options:
  command:
    description: Which hostagent command to run.
    type: str
    choices: [install, uninstall]
    required: true
  component:
    description:
      - C(agent) runs C(hostagent install|uninstall); C(k8s-sync) runs C(hostagent k8s-sync install|uninstall),
        the service that reports a cluster's resources to deepflow-server (one per cluster).
    type: str
    choices: [agent, k8s-sync]
    default: agent
  executable:
    description: Path of the hostagent CLI on the target.
    type: path
    default: /usr/sbin/hostagent
  executable_replaced:
    description:
      - An earlier task of this run replaces I(executable) (a newer hostagent). In check mode the one on the
        target is then not asked for a plan, since the new one (not there yet) may plan otherwise.
    type: bool
    default: false
  inputs_replaced:
    description:
      - An earlier task of this run replaces a file the command reads (the agent binary, the kubeconfig).
        In check mode the CLI is then not asked for a plan, since it would plan from the old file.
    type: bool
    default: false
  controller_ips:
    description: deepflow-server controller IPs (C(--controller-ip), repeated). Required for install.
    type: list
    elements: str
    default: []
  controller_port:
    description: Controller port (C(--controller-port)).
    type: int
  cluster_id:
    description: kubernetes-cluster-id to write (C(--cluster-id)).
    type: str
  watcher_domain:
    description: Look the cluster id up from this watcher Domain (C(--watcher-domain), needs I(server)).
    type: str
  server:
    description: deepflow-server API C(HOST[:PORT]) (C(--server)).
    type: str
  domain_timeout:
    description: Seconds to wait for the watcher Domain (C(--domain-timeout)).
    type: float
  agent_group:
    description: Agent group id C(g-XXXXXXXXXX), or a name with I(server) (C(--agent-group)).
    type: str
  team_id:
    description: team-id for the agent's config, its team on a multi-tenant server (C(--team-id)).
    type: str
  org_id:
    description: Organization for API calls, header X-Org-Id, 1-1024 (C(--org-id), needs I(server)).
    type: int
  user:
    description: System user the agent (or k8s-sync) runs as (C(--user)).
    type: str
  caps:
    description: Capability profile or C(cap_a,cap_b) list (C(--caps)).
    type: str
  cpu_millicores:
    description: CPU limit in millicores until the agent has its group config (C(--cpu-millicores)).
    type: int
  memory_mib:
    description: Memory limit in MiB until the agent has its group config (C(--memory-mib)).
    type: int
  agent_binary:
    description: Path on the target of the agent binary to install (C(--agent-binary)).
    type: path
  remote_upgrade:
    description:
      - C(allow) lets the server upgrade the agent, C(deny) keeps its binary read-only, C(auto) (hostagent's
        default) allows unless a dpkg/rpm package owns the agent binary or the host keeps the mode it has
        (C(--remote-upgrade)).
    type: str
    choices: [auto, allow, deny]
  metrics_textfile:
    description:
      - node_exporter textfile-collector directory on the target; a systemd timer writes C(hostagent.prom) there
        every minute (C(--metrics-textfile)). Uninstall removes the timer and the file.
    type: path
  kubeconfig:
    description:
      - k8s-sync only. kubeconfig file on the target (C(--kubeconfig)); hostagent copies it, flattened,
        root-owned and readable by the service's group, and never shows its text in a diff.
    type: path
  interval:
    description: k8s-sync only. Seconds between full reports (C(--interval)).
    type: float
  tls:
    description: k8s-sync only. Talk TLS to the controllers (C(--tls) or C(--no-tls)); unset keeps the CLI's default.
    type: bool
  tls_ca:
    description: k8s-sync only. CA file on the target for the controllers' TLS (C(--tls-ca)).
    type: path
  configmaps:
    description: k8s-sync only. Also report ConfigMaps (C(--configmaps) or C(--no-configmaps)); unset keeps the CLI's default.
    type: bool
  max_message_mib:
    description: k8s-sync only. The server's grpc-max-message-length in MiB (C(--max-message-mib)).
    type: int
  keep_logs:
    description: For uninstall, leave /var/log/deepflow-agent in place (C(--keep-logs)).
    type: bool
    default: false
  deregister:
    description: For uninstall, also delete this host's agent from the server install used (C(--deregister)).
    type: bool
    default: false
attributes:
  check_mode:
    description: Runs C(hostagent ... --dry-run), which plans every step and changes nothing.
    support: full
  diff_mode:
    description: Shows the unified diffs of the agent config and the systemd unit, and one line for every other planned step.
    support: full
author: hostagent maintainers (@hostagent)
"""

EXAMPLES = r"""
- name: Converge the agent
  hostagent.deepflow.hostagent:
    command: install
    controller_ips: [10.0.0.5]
    agent_binary: /var/lib/hostagent-ansible/deepflow-agent

- name: Remove it
  hostagent.deepflow.hostagent:
    command: uninstall
"""

RETURN = r"""
report:
  description: The CLI's JSON object (command, ok, changed, dry_run, steps, notes, error, exit_code).
  returned: when the CLI ran
  type: dict
steps:
  description: The CLI's steps, each with id, title, status, diff and seconds.
  returned: when the CLI ran
  type: list
  elements: dict
cmd:
  description: The argv that was run.
  returned: when the CLI ran
  type: list
  elements: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = dict(
    command=dict(type="str", required=True, choices=["install", "uninstall"]),
    component=dict(type="str", default="agent", choices=["agent", "k8s-sync"]),
    executable=dict(type="path", default="/usr/sbin/hostagent"),
    executable_replaced=dict(type="bool", default=False),
    inputs_replaced=dict(type="bool", default=False),
    controller_ips=dict(type="list", elements="str", default=[]),
    controller_port=dict(type="int"),
    cluster_id=dict(type="str"),
    watcher_domain=dict(type="str"),
    server=dict(type="str"),
    domain_timeout=dict(type="float"),
    agent_group=dict(type="str"),
    team_id=dict(type="str"),
    org_id=dict(type="int"),
    user=dict(type="str"),
    caps=dict(type="str"),
    cpu_millicores=dict(type="int"),
    memory_mib=dict(type="int"),
    agent_binary=dict(type="path"),
    remote_upgrade=dict(type="str", choices=["auto", "allow", "deny"]),
    metrics_textfile=dict(type="path"),
    kubeconfig=dict(type="path"),
    interval=dict(type="float"),
    tls=dict(type="bool"),
    tls_ca=dict(type="path"),
    configmaps=dict(type="bool"),
    max_message_mib=dict(type="int"),
    keep_logs=dict(type="bool", default=False),
    deregister=dict(type="bool", default=False),
)

# Module option -> CLI flag, for the install options that take a value.
INSTALL_FLAGS = (
    ("controller_port", "--controller-port"),
    ("cluster_id", "--cluster-id"),
    ("watcher_domain", "--watcher-domain"),
    ("server", "--server"),
    ("domain_timeout", "--domain-timeout"),
    ("agent_group", "--agent-group"),
    ("team_id", "--team-id"),
    ("org_id", "--org-id"),
    ("user", "--user"),
    ("caps", "--caps"),
    ("cpu_millicores", "--cpu-millicores"),
    ("memory_mib", "--memory-mib"),
    ("agent_binary", "--agent-binary"),
    ("remote_upgrade", "--remote-upgrade"),
    ("metrics_textfile", "--metrics-textfile"),
)

# The same for `hostagent k8s-sync install`; its switches are (option, flag when true, flag when false).
K8S_SYNC_FLAGS = (
    ("controller_port", "--controller-port"),
    ("cluster_id", "--cluster-id"),
    ("team_id", "--team-id"),
    ("kubeconfig", "--kubeconfig"),
    ("interval", "--interval"),
    ("tls_ca", "--tls-ca"),
    ("max_message_mib", "--max-message-mib"),
    ("user", "--user"),
)
K8S_SYNC_SWITCHES = (("tls", "--tls", "--no-tls"), ("configmaps", "--configmaps", "--no-configmaps"))


def build_argv(params, dry_run):
    k8s = params.get("component") == "k8s-sync"
    argv = [params["executable"]] + (["k8s-sync"] if k8s else []) + [params["command"]]
    if params["command"] == "install":
        for ip in params["controller_ips"]:
            argv += ["--controller-ip", ip]
        if k8s:
            for name, on, off in K8S_SYNC_SWITCHES:
                if params[name] is not None:
                    argv.append(on if params[name] else off)
        for name, flag in K8S_SYNC_FLAGS if k8s else INSTALL_FLAGS:
            value = params[name]
            # Empty strings mean "not set", so role defaults can stay "" instead of null.
            if value is not None and value != "":
                argv += [flag, str(value)]
    elif not k8s:
        if params["keep_logs"]:
            argv.append("--keep-logs")
        if params.get("deregister"):
            argv.append("--deregister")
    if dry_run:
        argv.append("--dry-run")
    return argv + ["--yes", "--json"]


def run_cli(module, argv):
    """Run the CLI once; its --json contract is one object on stdout, whatever the exit code."""
    rc, out, err = module.run_command(argv, environ_update={"LANG": "C.UTF-8"})
    try:
        report = json.loads(out)
    except ValueError:
        module.fail_json(msg="hostagent did not print one JSON object", cmd=argv, rc=rc, stdout=out, stderr=err)
    if rc != 0 or not report.get("ok", False):
        module.fail_json(msg="hostagent %s failed: %s" % (argv[1], report.get("error") or err.strip()),
                         cmd=argv, rc=rc, report=report, steps=report.get("steps", []), stderr=err)
    return report


def diffs_of(report):
    """Ansible diff entries from a --dry-run report: the CLI's unified diffs, or its one-line plan."""
    entries = []
    for step in report.get("steps", []):
        text = step.get("diff")
        if step.get("status") != "planned" or not text:
            continue
        if not text.endswith("\n"):
            text += "\n"
        if not text.startswith(("---", "diff ")):
            text = "[%s]\n%s" % (step.get("id"), text)
        entries.append({"prepared": text})
    return entries


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    exe = params["executable"]
    if not os.access(exe, os.X_OK):
        if module.check_mode:
            # An earlier task of this run would have put hostagent there (Ansible's usual dry-run
            # rule); the role calls uninstall without it only when a manifest records an install.
            module.exit_json(changed=True, msg="%s is not on the host yet; no plan to show" % exe)
        module.fail_json(msg="hostagent not found at %s" % exe)
    if module.check_mode and params["command"] == "install" and params["executable_replaced"]:
        module.exit_json(changed=True, msg="%s is replaced by this run; no plan to show" % exe)
    if module.check_mode and params["command"] == "install" and params["inputs_replaced"]:
        module.exit_json(changed=True, msg="a file hostagent reads is replaced by this run; no plan to show")
    for what, path in (("agent binary", params["agent_binary"]), ("kubeconfig", params["kubeconfig"])):
        if module.check_mode and params["command"] == "install" and path and not os.path.exists(path):
            module.exit_json(changed=True, msg="%s %s is not on the host yet; no plan to show" % (what, path))

    diff = []
    if module.check_mode or module._diff:
        plan_argv = build_argv(params, dry_run=True)
        plan = run_cli(module, plan_argv)
        diff = diffs_of(plan)
        if module.check_mode:
            module.exit_json(changed=bool(plan["changed"]), report=plan, steps=plan["steps"], cmd=plan_argv,
                             diff=diff)
    argv = build_argv(params, dry_run=False)
    report = run_cli(module, argv)
    result = dict(changed=bool(report["changed"]), report=report, steps=report["steps"], cmd=argv)
    if diff and report["changed"]:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
