"""Host names for `controller-ips`: the agent resolves DNS names there as well as taking IPs."""

from __future__ import annotations

import re

# RFC 1123 labels: letters, digits and inner hyphens, 1-63 characters. ASCII only: [0-9] rather than \d,
# which matches other digits too, and fullmatch, because $ would let a trailing newline through.
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_hostname(name: str) -> bool:
    """A DNS host name: dot-separated RFC 1123 labels, at most 253 characters, no trailing dot, and a
    last label that is not all digits (so 10.0.0.300 is neither an IP nor a name)."""
    if not 0 < len(name) <= 253 or not name.isascii():
        return False
    labels = name.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()
