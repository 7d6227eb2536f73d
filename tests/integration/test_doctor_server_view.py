"""doctor's view of this host's agent on deepflow-server (what --prometheus exports): registered or not,
in the group install named, the exceptions it reports, its last sync; against the fake server that
answers GET /v1/vtaps/ like a real one, loopback only."""
from __future__ import annotations

from hostagent import doctor, metrics
from tests.fixtures.fake_group_server import FakeGroupServer
from tests.integration.test_agent_group_move import registered, srv  # noqa: F401 (fixture)


def test_the_servers_view_of_this_hosts_agent(srv: FakeGroupServer) -> None:  # noqa: F811
    edge = srv.add_group("edge")
    opts = {"server": srv.url, "agent_group": edge["SHORT_UUID"]}
    view, problems = doctor.server_view(opts, 5)
    assert (view["reachable"], view["registered"]) == (True, False)
    assert problems == [f"this host's agent is not registered on {srv.url}"]

    agent = registered(srv)
    srv.vtaps[agent["LCUUID"]].update(EXCEPTIONS=[8192], SYNCED_CONTROLLER_AT="2023-11-14 22:13:20")
    view, problems = doctor.server_view(opts, 5)
    assert (view["registered"], view["in_group"], view["exceptions"], view["last_sync"]) == (True, False, [8192], 1700000000)
    assert problems == [f"the server has this host's agent in group default, not {edge['SHORT_UUID']}",
                        "the server reports exceptions 8192 for this host's agent"]
    text = metrics.render({"installed": True, "server": view, "processes": []})
    assert f'hostagent_server_agent_in_group{{group="{edge["SHORT_UUID"]}"}} 0' in text
    assert "hostagent_server_agent_exceptions 1\n" in text
    assert "hostagent_server_agent_last_sync_timestamp_seconds 1700000000.0\n" in text

    srv.vtaps[agent["LCUUID"]].update(EXCEPTIONS=None, VTAP_GROUP_LCUUID=edge["LCUUID"])
    view, problems = doctor.server_view(opts, 5)
    assert (view["in_group"], view["exceptions"], problems) == (True, [], [])
    # Without --agent-group the group is not known: no verdict, no sample.
    assert doctor.server_view({"server": srv.url}, 5)[0]["in_group"] is None


def test_a_server_that_does_not_answer() -> None:
    view, problems = doctor.server_view({"server": "http://127.0.0.1:9"}, 1)
    assert view["reachable"] is False and view["registered"] is None
    assert problems and problems[0].startswith("cannot ask http://127.0.0.1:9 about this host's agent: ")
    assert "hostagent_server_reachable 0\n" in metrics.render({"server": view})
