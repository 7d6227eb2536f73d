"""Steps: each is one reversible change with check / apply / revert."""
from __future__ import annotations

from typing import Any

from hostagent.errors import InputError
from hostagent.steps.accounts import Group, User
from hostagent.steps.base import Record, Step
from hostagent.steps.cgroup import AgentCgroups
from hostagent.steps.dropin import UnitDropIn
from hostagent.steps.files import Binary, Directory, File, FileCaps, ServiceDefinition
from hostagent.steps.metrics import Textfile, Timer
from hostagent.steps.server import AgentGroupMembership
from hostagent.steps.service import InittabLine, Service

KINDS: dict[str, type[Step]] = {cls.kind: cls for cls in (Group, User, Binary, Directory, File, AgentCgroups, FileCaps,
                                                          ServiceDefinition, UnitDropIn, InittabLine, Service,
                                                          AgentGroupMembership, Timer, Textfile)}


def from_dict(entry: dict[str, Any]) -> Step:
    """Rebuild a step from its manifest entry; an unknown kind or bad parameters are refused."""
    kind = entry.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    params = entry.get("params")
    if cls is None or not isinstance(params, dict):
        raise InputError(f"manifest entry {entry.get('id')!r} has an unknown kind {kind!r} or no params")
    try:
        return cls(**params)
    except TypeError as e:
        raise InputError(f"manifest entry {entry.get('id')!r} has bad params: {e}") from None


__all__ = ["KINDS", "Record", "Step", "from_dict"]
