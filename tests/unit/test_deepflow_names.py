"""Host names accepted in controller-ips."""

from __future__ import annotations

import pytest

from hostagent.deepflow.names import is_hostname


@pytest.mark.parametrize("name", ["deepflow", "deepflow-server.example.com", "a", "a-1.b2", "x" * 63,
                                  ".".join(["a" * 63] * 3) + "." + "b" * 61, "1a.example", "host.2c", "1e3"])
def test_valid(name: str) -> None:
    assert is_hostname(name)


@pytest.mark.parametrize("name", ["", "host\n", "host\r", "ho\x00st", "ho st", "-host", "host-", "a..b", ".host",
                                  "host.", "x" * 64, ".".join(["a" * 63] * 4), "hôst", "ho_st", "10.0.0.300",
                                  "1.2.3.4", "fd00::5", "host:30035", "host/24", "٣.example"])
def test_invalid(name: str) -> None:
    assert not is_hostname(name)
