"""This host's agent on deepflow-server, in the agent group install was asked for.

`vtap-group-id-request` in the agent's config places only an agent that registers for the first time;
one the server already knows stays in its old group (deepflow issue #11481). So when the server lists
this host's agent (GET /v1/vtaps/, matched by CTRL_IP and CTRL_MAC both) in another
group, apply moves it (PATCH /v1/vtaps/<lcuuid>/ with VTAP_GROUP_LCUUID) and waits, bounded, until the
server reports it there; if that wait fails it moves it back before failing. The record keeps the group
it came from. An agent that matches only by CTRL_IP, LAUNCH_SERVER or NAME may be another host's: it is
reported (install's notes, status) and never moved.

Revert (uninstall) leaves the server alone: the agent's record stays in the group it was moved to, as
the user asked; `hostagent uninstall --deregister` deletes the record once the agent is stopped. The step
is planned last, so a failing later step never has to undo a change on the server.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hostagent.errors import ServerError, StepError
from hostagent.steps.base import Record, Step

MOVE_WAIT = 60.0  # seconds for the server to report the agent in its new group


@dataclass
class AgentGroupMembership(Step):
    kind = "agent-group"
    server: str
    group_id: str  # g-XXXXXXXXXX
    group_lcuuid: str
    org_id: int = 1
    # Agents that only look like this host's, from the last lookup: reported, never moved.
    reported: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        return self.server

    @property
    def title(self) -> str:
        return f"this host's agent in agent group {self.group_id} on {self.server}"

    def _client(self) -> Any:
        from hostagent import server

        return server.Client.for_server(self.server, 10.0, self.org_id)

    def _agent(self) -> Optional[dict[str, Any]]:
        from hostagent import server

        agent, self.reported = server.lookup_host_agent(self._client())
        return agent

    def check(self) -> bool:
        """True when the agent is in the group, or not registered yet (its first registration places it)."""
        agent = self._agent()
        return agent is None or agent.get("VTAP_GROUP_LCUUID") == self.group_lcuuid

    def drift(self) -> list[str]:
        try:
            agent = self._agent()
        except ServerError as e:
            return [f"{self.title}: cannot check: {e}"]
        if agent is None or agent.get("VTAP_GROUP_LCUUID") == self.group_lcuuid:
            return list(self.reported)
        return [f"agent {agent.get('NAME')} is in group {agent.get('VTAP_GROUP_NAME') or agent.get('VTAP_GROUP_LCUUID')} "
                f"on {self.server}, not {self.group_id}"]

    def diff(self) -> Optional[str]:
        agent = self._agent()
        if agent is None:
            return f"+ the agent registers in {self.group_id} (vtap-group-id-request)"
        return (f"~ move agent {agent.get('NAME')} ({agent.get('CTRL_IP')}) from group "
                f"{agent.get('VTAP_GROUP_NAME') or agent.get('VTAP_GROUP_LCUUID')} to {self.group_id} on {self.server}")

    def snapshot(self) -> Record:
        agent = self._agent()
        if agent is None:
            return {"vtap_lcuuid": None}
        return {"vtap_lcuuid": str(agent["LCUUID"]), "name": agent.get("NAME"),
                "from_group_lcuuid": str(agent.get("VTAP_GROUP_LCUUID") or "")}

    def apply(self, record: Record) -> None:
        from hostagent import server

        vtap, before = record.get("vtap_lcuuid"), record.get("from_group_lcuuid")
        if vtap is None:
            return
        client = self._client()
        try:
            server.move_agent(client, vtap, self.group_lcuuid, wait=MOVE_WAIT)
        except ServerError as e:
            # Revert leaves the server alone (uninstall's rule), so a failed move is undone here.
            try:
                if before:
                    server.set_agent_group(client, vtap, before)
            except ServerError as undo:
                raise StepError(f"cannot move agent {record.get('name')} to {self.group_id}: {e}; and moving it back "
                                f"failed: {undo}") from None
            raise StepError(f"cannot move agent {record.get('name')} to {self.group_id}: {e}") from None

    def revert(self, record: Record) -> None:
        """Uninstall leaves the server alone (see the module docstring; --deregister is the CLI's)."""
