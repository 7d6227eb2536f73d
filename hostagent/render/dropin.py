"""hostagent's systemd unit as a drop-in over a unit that DeepFlow's package owns.

dpkg and rpm replace the package's unit at each upgrade; a drop-in (<unit>.d/hostagent.conf) is
systemd's own way to change a packaged unit and no package touches it. The drop-in resets whatever the
package's [Service] sets that hostagent's unit does not replace by a later assignment (list settings
such as ExecStart= or Environment= add up; settings hostagent does not set go back to systemd's
default), then carries hostagent's whole unit: the merged unit is hostagent's in effect."""
from __future__ import annotations

import os
from typing import Callable, Optional

NAME = "hostagent.conf"
MARK = "# Installed by hostagent"
# Where a package puts the unit, in systemd's order (the first one found wins).
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
# Settings that add up over assignments (an empty one resets them): overriding needs a reset first.
LIST_KEYS = frozenset({
    "ExecStartPre", "ExecStart", "ExecStartPost", "ExecCondition", "ExecReload", "ExecStop", "ExecStopPost",
    "Environment", "EnvironmentFile", "UnsetEnvironment", "PassEnvironment", "CapabilityBoundingSet",
    "AmbientCapabilities", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
    "BindPaths", "BindReadOnlyPaths", "SupplementaryGroups", "SystemCallFilter", "SystemCallArchitectures",
    "RestrictAddressFamilies", "RestrictNamespaces", "DeviceAllow", "TemporaryFileSystem", "LogExtraFields",
    "RestartPreventExitStatus", "RestartForceExitStatus", "SuccessExitStatus",
})

RESETS_END = "# hostagent's unit:\n"
Entry = tuple[str, str, str]  # section, key, value


def parse(text: str) -> list[Entry]:
    """A unit file's assignments in order (comments dropped, backslash continuations joined)."""
    entries: list[Entry] = []
    section, pending = "", ""
    for raw in text.splitlines():
        line = (pending + raw.strip()) if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            key, value = line.split("=", 1)
            entries.append((section, key.strip(), value.strip()))
    return entries


def resets(ours: str, package: str) -> list[str]:
    """The [Service] keys the drop-in must reset before hostagent's lines (ExecStart= always)."""
    ours_keys = {k for s, k, _ in parse(ours) if s == "Service"}
    need = {"ExecStart"}
    for section, key, _ in parse(package):
        if section == "Service" and (key in LIST_KEYS or key not in ours_keys):
            need.add(key)
    return sorted(need)


def render(ours: str, package: str, defaults: Optional[dict[str, str]] = None) -> str:
    """The drop-in: hostagent's unit `ours`, each [Service] headed by the resets `package` needs.
    defaults: the value that resets a key an empty assignment does not (Limit*: the manager's default)."""
    defaults = defaults or {}
    out = [f"{MARK}: DeepFlow's package owns this unit; `hostagent uninstall` removes this drop-in.\n"]
    for line in ours.splitlines(keepends=True):
        if line.startswith(MARK):
            continue
        out.append(line)
        if line.strip() == "[Service]":
            out.append("# Reset what DeepFlow's unit sets, so that only hostagent's settings below are in effect.\n")
            out.extend(f"{key}={defaults.get(key, '')}\n" for key in resets(ours, package))
            out.append(RESETS_END)
    return "".join(out)


def limit_defaults(keys: list[str], show: Callable[[list[str]], str]) -> dict[str, str]:
    """An empty LimitX= is ignored: its reset is the manager's DefaultLimitX (soft:hard), as
    `systemctl show` of the manager gives it (show: argv → stdout)."""
    limits = [k for k in keys if k.startswith("Limit")]
    if not limits:
        return {}
    argv = ["systemctl", "show"] + [f"--property=Default{k}{s}" for k in limits for s in ("", "Soft")]
    found = dict(line.split("=", 1) for line in show(argv).splitlines() if "=" in line)
    out = {}
    for key in limits:
        hard, soft = found.get(f"Default{key}"), found.get(f"Default{key}Soft")
        if hard and soft:
            out[key] = f"{soft}:{hard}"
    return out


def uncovered(dropin: str, package: str) -> list[str]:
    """What the package's unit sets now that the drop-in does not override (its unit changed since
    the drop-in was written): keys the drop-in never assigns, or list keys it does not reset first."""
    first: dict[str, str] = {}
    for section, key, value in parse(dropin):
        if section == "Service":
            first.setdefault(key, value)
    missing = []
    for section, key, _ in parse(package):
        if section != "Service" or key in missing:
            continue
        if key not in first or (key in LIST_KEYS and first[key] != "") or (key.startswith("Limit") and first[key] == ""):
            missing.append(key)
    return missing


def package_unit(unit: str, path: Callable[[str], str] = lambda p: p) -> Optional[str]:
    """Where the unit systemd would load lives (as the host names it), when hostagent did not write
    it (a package's); None when there is none or it is hostagent's own full unit."""
    for directory in UNIT_DIRS:
        where = f"{directory}/{unit}"
        try:
            with open(path(where), "rb") as f:
                head = f.read(len(MARK))
        except FileNotFoundError:
            continue
        except OSError:
            return None  # not a readable file (preflight refuses a symlink at /etc)
        return None if head == MARK.encode() else where
    return None


def dropin_path(unit: str) -> str:
    return os.path.join(UNIT_DIRS[0], unit + ".d", NAME)
