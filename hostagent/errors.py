"""Exceptions, each carrying the exit code the CLI turns it into."""
from __future__ import annotations


class HostagentError(Exception):
    """A failure after changes began; what was applied has been rolled back."""

    exit_code = 1


class InputError(HostagentError):
    """Bad input or a failed preflight: nothing on the host was changed."""

    exit_code = 2


class StepError(HostagentError):
    """A step could not apply or verify its change."""

    exit_code = 1
