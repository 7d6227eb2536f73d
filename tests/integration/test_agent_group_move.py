"""install --agent-group on a host whose agent the server already knows: the membership step against a
fake server that answers like a real one (GET /v1/vtaps/, PATCH /v1/vtaps/<lcuuid>/), loopback only."""

from __future__ import annotations

from typing import Iterator

import pytest

from hostagent import server as deepflow
from hostagent.errors import ServerError, StepError
from hostagent.facts.host import host_identity
from hostagent.steps import from_dict
from hostagent.steps import server as membership
from tests.fixtures.fake_group_server import FakeGroupServer


def test_which_registered_agent_is_this_hosts() -> None:
    me = dict(hostname="node-1", ips=frozenset({"10.0.0.5"}), macs=frozenset({"52:54:00:aa:bb:cc"}))
    other = {"LCUUID": "o", "NAME": "node-2", "CTRL_IP": "10.0.0.6", "CTRL_MAC": "52:54:00:00:00:01",
             "LAUNCH_SERVER": "10.0.0.6"}
    by_ip_mac = {"LCUUID": "a", "NAME": "x", "CTRL_IP": "10.0.0.5", "CTRL_MAC": "52:54:00:AA:BB:CC"}
    by_ip = {"LCUUID": "b", "NAME": "y", "CTRL_IP": "10.0.0.5", "CTRL_MAC": "52:54:00:00:00:02"}
    by_name = {"LCUUID": "c", "NAME": "node-1", "CTRL_IP": "192.168.9.9", "LAUNCH_SERVER": "192.168.9.9"}
    by_launch = {"LCUUID": "e", "NAME": "w", "CTRL_IP": "192.168.9.8", "LAUNCH_SERVER": "10.0.0.5"}
    assert deepflow.match_host_agent([other, by_ip, by_ip_mac], **me) == by_ip_mac
    # Only IP+MAC is this host's; the rest may be another host's (NAT, a reused IP, a duplicate name).
    weaker = [other, by_ip, by_name, by_launch]
    assert deepflow.match_host_agent(weaker, **me) is None
    assert [line.split(" matches")[0] for line in deepflow.weak_matches(weaker, **me)] == [
        "agent y (10.0.0.5, 52:54:00:00:00:02)", "agent node-1 (192.168.9.9, no MAC)", "agent w (192.168.9.8, no MAC)"]
    assert "only by CTRL_IP, not its CTRL_MAC: left alone" in deepflow.weak_matches([by_ip], **me)[0]
    with pytest.raises(ServerError, match="2 registered agents could be this host's: x \\(10.0.0.5\\), z"):
        deepflow.match_host_agent([by_ip_mac, dict(by_ip_mac, LCUUID="d", NAME="z")], **me)


@pytest.fixture
def srv() -> Iterator[FakeGroupServer]:
    me = host_identity()
    if not me.ips:
        pytest.skip("this host has no non-loopback address to register an agent with")
    with FakeGroupServer(version="7.1.0") as server:
        yield server


def registered(srv: FakeGroupServer) -> dict:
    me = host_identity()
    ip = sorted(me.ips)[0]
    return srv.add_vtap(me.hostname + "-V1", ip, sorted(me.macs)[0] if me.macs else "")


def test_a_known_agent_is_moved_and_waited_for_then_left_alone(srv: FakeGroupServer) -> None:
    target = srv.add_group("edge")
    agent = registered(srv)
    srv.move_delay = 0.5  # the server reports the new group a moment later
    step = membership.AgentGroupMembership(server=srv.url, group_id=target["SHORT_UUID"], group_lcuuid=target["LCUUID"])
    assert step.check() is False
    assert step.diff() == (f"~ move agent {agent['NAME']} ({agent['CTRL_IP']}) from group default to "
                           f"{target['SHORT_UUID']} on {srv.url}")
    assert step.drift() == [f"agent {agent['NAME']} is in group default on {srv.url}, not {target['SHORT_UUID']}"]
    record = step.snapshot()
    step.apply(record)
    assert record == {"vtap_lcuuid": agent["LCUUID"], "name": agent["NAME"],
                      "from_group_lcuuid": srv.default_group["LCUUID"]}
    patches = [r for r in srv.requests if r.method == "PATCH"]
    assert [(r.path, r.json()) for r in patches] == [(f"/v1/vtaps/{agent['LCUUID']}/",
                                                      {"VTAP_GROUP_LCUUID": target["LCUUID"]})]
    assert deepflow.agent_in_group(deepflow.Client(srv.url), agent["LCUUID"]) == target["LCUUID"]
    # Idempotent: in the group now, nothing to do; the manifest can rebuild the step.
    again = from_dict(step.to_dict())
    assert again.check() is True and again.drift() == []
    # Uninstall leaves the server alone; --deregister is what deletes the agent's record.
    srv.clear_requests()
    again.revert(record)
    assert [r for r in srv.requests if r.method != "GET"] == []
    assert deepflow.deregister_host_agent(deepflow.Client(srv.url)) == (agent["NAME"], [])
    assert srv.vtaps == {} and deepflow.deregister_host_agent(deepflow.Client(srv.url)) == (None, [])


def test_an_unregistered_agent_is_placed_by_its_config(srv: FakeGroupServer) -> None:
    target = srv.add_group("edge")
    step = membership.AgentGroupMembership(server=srv.url, group_id=target["SHORT_UUID"], group_lcuuid=target["LCUUID"])
    assert step.check() is True  # vtap-group-id-request places a first registration
    assert step.diff() == f"+ the agent registers in {target['SHORT_UUID']} (vtap-group-id-request)"


def test_another_hosts_agent_that_looks_like_this_ones_is_never_moved_or_deleted(srv: FakeGroupServer) -> None:
    """This host's agent is not registered yet; others share its CTRL_IP (a reused IP, NAT) or its name."""
    from hostagent.cli.agent import _deregister

    me = host_identity()
    target = srv.add_group("edge")
    same_ip = srv.add_vtap("elsewhere", sorted(me.ips)[0], "02:00:00:00:00:99")
    same_name = srv.add_vtap(me.hostname, "192.0.2.7", "02:00:00:00:00:98")
    step = membership.AgentGroupMembership(server=srv.url, group_id=target["SHORT_UUID"], group_lcuuid=target["LCUUID"])
    assert step.check() is True  # nothing of this host's to move
    step.apply(step.snapshot())
    reported = step.drift()  # status shows them; install's notes too (step.reported)
    assert len(reported) == 2 and reported == step.reported
    assert reported[0].startswith(f"agent elsewhere ({same_ip['CTRL_IP']}, 02:00:00:00:00:99) matches this host "
                                  "only by CTRL_IP, not its CTRL_MAC: left alone")
    assert reported[1].startswith(f"agent {me.hostname} (192.0.2.7, 02:00:00:00:00:98) matches this host only by NAME")
    note = _deregister({"server": srv.url}, dry_run=False)
    assert note.startswith(f"this host's agent (its CTRL_IP and CTRL_MAC) is not registered on {srv.url}; agent "
                           "elsewhere") and "left alone" in note
    assert [r for r in srv.requests if r.method not in ("GET",)] == []
    assert {v["LCUUID"]: v["VTAP_GROUP_LCUUID"] for v in srv.vtaps.values()} == {
        same_ip["LCUUID"]: srv.default_group["LCUUID"], same_name["LCUUID"]: srv.default_group["LCUUID"]}


def test_a_move_the_server_never_reports_is_undone(srv: FakeGroupServer, monkeypatch: pytest.MonkeyPatch) -> None:
    target = srv.add_group("edge")
    agent = registered(srv)
    srv.move_delay = 30
    monkeypatch.setattr(membership, "MOVE_WAIT", 0.5)
    step = membership.AgentGroupMembership(server=srv.url, group_id=target["SHORT_UUID"], group_lcuuid=target["LCUUID"])
    with pytest.raises(StepError, match=f"cannot move agent {agent['NAME']} to {target['SHORT_UUID']}: "
                       "deepflow-server still reports agent"):
        step.apply(step.snapshot())
    assert srv.vtaps[agent["LCUUID"]]["VTAP_GROUP_LCUUID"] == srv.default_group["LCUUID"]  # moved back


def test_the_plan_ends_with_the_move(srv: FakeGroupServer) -> None:
    from hostagent import facts, options, planner
    from hostagent.host import Host, using

    target = srv.add_group("edge")
    opts = options.build({"controller_ips": ["127.0.0.1"], "server": srv.url, "agent_group": "edge"})
    with using(Host(init="systemd")):  # planning only: the service steps of a systemd host
        host = facts.gather()
        resolved = planner.Resolved(("cap_net_raw",), None, target["SHORT_UUID"], "deepflow", (), target["LCUUID"])
        steps = planner.plan(opts, host, resolved)
        no_server = planner.plan(options.build({"controller_ips": ["127.0.0.1"], "agent_group": target["SHORT_UUID"]}),
                                 host, resolved)
    assert steps[-1] == membership.AgentGroupMembership(server=srv.url, group_id=target["SHORT_UUID"],
                                                        group_lcuuid=target["LCUUID"])
    assert not any(isinstance(s, membership.AgentGroupMembership) for s in no_server)


def test_status_says_when_the_server_cannot_be_asked() -> None:
    from hostagent.status import _problems

    step = membership.AgentGroupMembership(server="http://127.0.0.1:1", group_id="g-0123456789", group_lcuuid="x")
    (problem,) = _problems(step, {"noop": True})
    assert problem.startswith(f"{step.title}: cannot check: cannot reach deepflow-server at http://127.0.0.1:1")
