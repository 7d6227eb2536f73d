from __future__ import annotations

import pytest

from hostagent import caps
from hostagent.errors import InputError


def test_profiles() -> None:
    assert caps.mask(caps.resolve("deepflow-doc")) == 0x287000  # DeepFlow's documented five
    assert "cap_sys_admin" not in caps.resolve("cbpf-minimal")
    assert "cap_bpf" not in caps.resolve("ebpf", (5, 4)) and "cap_syslog" in caps.resolve("ebpf", (5, 4))
    assert {"cap_bpf", "cap_perfmon"} <= set(caps.resolve("ebpf", (5, 8, 0)))


def test_explicit_lists_normalise_and_refuse_unknown() -> None:
    assert caps.resolve("NET_RAW, cap_net_admin") == ("cap_net_admin", "cap_net_raw")
    with pytest.raises(InputError):
        caps.resolve("cap_net_raw,cap_teleport")
    with pytest.raises(InputError):
        caps.resolve(" , ")


def test_xattr_round_trip_and_description() -> None:
    names = caps.resolve("ebpf", (6, 1))
    raw = caps.encode_file_caps(names)
    parsed = caps.decode_file_caps(raw)
    assert parsed["effective"] and parsed["permitted"] == parsed["inheritable"] == caps.mask(names)
    assert (parsed["permitted"] >> 32) != 0  # cap_syslog/cap_bpf/cap_perfmon live in the high word
    assert caps.file_caps_match(raw, names) and not caps.file_caps_match(raw, names[:-1])
    assert caps.describe_file_caps(raw) == ",".join(names) + "=eip"
