"""The one error family. Each error carries the exit code the CLI turns it into; the CLI alone
decides how an error looks."""
from __future__ import annotations

from typing import Any, Optional


class HostagentError(Exception):
    """The family's root; raised as itself, a failure after changes began (rolled back where it could be)."""

    exit_code = 1


class InputError(HostagentError):
    """Bad input or a failed preflight: nothing on the host was changed."""

    exit_code = 2


class ServerError(InputError):
    """deepflow-server refused, failed or gave an answer hostagent cannot use; nothing was changed."""


class RouteMissing(ServerError):
    """The server has no such route (gin's text 404): an older or newer deepflow-server version."""


class StepError(HostagentError):
    """A step could not apply or verify its change."""

    exit_code = 1


class SymlinkRefused(StepError):
    """A symlink stands where root would write; it is refused, not followed."""


class RunFailed(StepError):
    """A plan stopped part-way; outcome holds each step's result, the rollback's included."""

    def __init__(self, message: str, outcome: Optional[Any] = None) -> None:
        super().__init__(message)
        self.outcome = outcome
