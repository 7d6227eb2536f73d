"""Input validation: every refusal is one clear line and happens before anything runs."""
from __future__ import annotations

import pytest

from hostagent import options
from hostagent.errors import InputError


def build(**kw):
    kw.setdefault("controller_ips", ["10.1.2.3"])
    return options.build(kw)


def test_defaults() -> None:
    o = build()
    assert (o.controller_port, o.user, o.caps, o.cpu_millicores, o.memory_mib) == (30035, "deepflow", "deepflow-doc", 1000, 768)
    assert o.agent_binary == "/usr/sbin/deepflow-agent"


@pytest.mark.parametrize("kw, message", [
    ({"controller_ips": []}, "at least one --controller-ip"),
    ({"controller_ips": ["10.0.0.300"]}, "malformed controller IP or host name"),
    ({"controller_ips": ["bad_name!"]}, "malformed controller IP or host name"),
    ({"controller_ips": ["-x.example"]}, "malformed controller IP or host name"),
    ({"team_id": "bad team"}, "invalid team id"),
    ({"org_id": 0, "server": "10.0.0.1"}, "--org-id 0 is outside [1, 1024]"),
    ({"org_id": 2}, "--org-id is for API calls: it needs --server"),
    ({"controller_ips": ["10.0.0.1", "fd00::1"]}, "mix IPv4 and IPv6"),
    ({"controller_ips": ["10.0.0.1\n- 6.6.6.6"]}, "single line"),
    ({"cluster_id": "-bad"}, "invalid cluster id"),
    ({"cluster_id": "a" * 33}, "invalid cluster id"),
    ({"cluster_id": "ok: {x}"}, "invalid cluster id"),
    ({"cluster_id": "abc", "watcher_domain": "w", "server": "10.0.0.1"}, "not both"),
    ({"watcher_domain": "w"}, "needs --server"),
    ({"watcher_domain": "a b: c", "server": "10.0.0.1"}, "invalid watcher domain"),
    ({"agent_group": "g-123"}, "invalid agent group"),
    ({"agent_group": "g-ABCDEFGHIJ\n"}, "single line"),
    ({"user": "root"}, "invalid user name"),
    ({"user": "Deep Flow"}, "invalid user name"),
    ({"caps": "cap_net_raw,cap_bogus"}, "unknown capability 'cap_bogus'"),
    ({"cpu_millicores": 0}, "--cpu-millicores out of range"),
    ({"memory_mib": "lots"}, "--memory-mib must be an integer"),
    ({"controller_port": 70000}, "--controller-port out of range"),
    ({"agent_binary": "relative/agent"}, "absolute path"),
    ({"server": "10.0.0.1:99999", "watcher_domain": "w"}, "port out of range"),
    ({"server": "bad host!", "watcher_domain": "w"}, "malformed --server"),
])
def test_bad_input_is_refused_with_one_line(kw, message) -> None:
    with pytest.raises(InputError) as e:
        build(**kw)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_agent_group_ids_and_names() -> None:
    assert build(agent_group="g-AbCdE12345").agent_group == "g-AbCdE12345"
    # A name is accepted only with a server to resolve it.
    assert build(agent_group="edge-nodes", server="10.0.0.9").agent_group == "edge-nodes"


def test_config_file_values_and_flags_win() -> None:
    o = options.build({"memory_mib": 512, "controller_ips": None},
                      {"controller-ips": ["192.0.2.1", "192.0.2.2"], "memory-mib": 1024, "user": "dfagent"})
    assert o.controller_ips == ("192.0.2.1", "192.0.2.2") and o.memory_mib == 512 and o.user == "dfagent"


def test_unknown_config_file_key_is_refused() -> None:
    with pytest.raises(InputError, match="unknown key 'controler-ips'"):
        options.build({}, {"controler-ips": ["192.0.2.1"]})


def test_server_parsing() -> None:
    assert options.parse_server("deepflow.example.org").url == "http://deepflow.example.org:30417"
    assert options.parse_server("10.0.0.5:20417").url == "http://10.0.0.5:20417"
    assert options.parse_server("[fd00::5]:30417").url == "http://[fd00::5]:30417"


def test_load_config_file(tmp_path) -> None:
    f = tmp_path / "opts.yaml"
    f.write_text("controller-ips: [192.0.2.7]\ncaps: cbpf-minimal\n")
    assert options.load_config_file(str(f)) == {"controller-ips": ["192.0.2.7"], "caps": "cbpf-minimal"}
    f.write_text("- just\n- a list\n")
    with pytest.raises(InputError, match="must be a YAML mapping"):
        options.load_config_file(str(f))
    f.write_text("a: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        options.load_config_file(str(f))


def test_controller_host_names_team_and_org() -> None:
    o = build(controller_ips=["deepflow.example.com", "10.0.0.1"], team_id="tAbC123", org_id="3", server="10.0.0.1")
    assert o.controller_ips == ("deepflow.example.com", "10.0.0.1") and (o.team_id, o.org_id) == ("tAbC123", 3)


def test_controller_families_once_resolved() -> None:
    import socket

    from hostagent.planner import check_controller_families

    # localhost comes from /etc/hosts: resolved without any traffic.
    first = socket.getaddrinfo("localhost", 1, type=socket.SOCK_STREAM)[0][0]
    same, other = ("127.0.0.2", "fd00::1") if first == socket.AF_INET else ("fd00::1", "127.0.0.2")
    assert check_controller_families(("localhost", same)) == []
    with pytest.raises(InputError, match=r"mix IPv4 and IPv6 once resolved: localhost \(IPv[46]\)"):
        check_controller_families(("localhost", other))

    def no_dns(*args: object, **kw: object) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # A name this host cannot resolve (no DNS here, say) is a warning: the agent resolves it at each start.
    (warning,) = check_controller_families(("df.example", "10.0.0.1"), lookup=no_dns)
    assert warning.startswith("controller host name df.example does not resolve here (Name or service not known)")
