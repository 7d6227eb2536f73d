"""Every packaged changelog from one Keep-a-Changelog markdown file (CHANGELOG.md for hostagent,
ansible/CHANGELOG.md for the collection): nfpm's chglog YAML (the .deb's changelog.Debian.gz and the
.rpm's %changelog) and the collection's changelogs/changelog.yaml (antsibull-changelog's format).

    python packaging/changelog.py chglog CHANGELOG.md VERSION "NAME <EMAIL>" OUT
    python packaging/changelog.py collection ansible/CHANGELOG.md VERSION OUT

`## [Unreleased]` is what the current version adds: it is folded into VERSION's entry (there is one
entry per version). A release without a date (`## [0.1.0] - unreleased`) is dated SOURCE_DATE_EPOCH,
the build's commit date, so the same commit gives the same packages.
"""
from __future__ import annotations

import datetime
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import yaml

HEADING = re.compile(r"^## \[?([^\]\s]+)\]?(?:\s*-\s*(\S+))?\s*$")
LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")


class Release(NamedTuple):
    version: str
    date: datetime.datetime
    changes: list[tuple[str, str]]  # (section, one item as plain text)


def build_date() -> datetime.datetime:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    if not epoch:
        raise SystemExit("changelog: SOURCE_DATE_EPOCH is not set (packaging/build.py sets the commit's date)")
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


def parse(text: str, version: str) -> list[Release]:
    """Releases, newest first; markdown links become `text (url)`."""
    releases: dict[str, Release] = {}
    current: Release | None = None
    section, item = "Changed", None

    def flush() -> None:
        nonlocal item
        if current is not None and item:
            current.changes.append((section, " ".join(LINK.sub(r"\1 (\2)", item).split())))
        item = None

    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            flush()
            name = version if m.group(1).lower() == "unreleased" else m.group(1)
            date = m.group(2) or ""
            when = (datetime.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
                    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", date) else build_date())
            current = releases.setdefault(name, Release(name, when, []))
            section = "Changed"
        elif line.startswith("### "):
            flush()
            section = line[4:].strip()
        elif current is None:
            continue
        elif line.startswith("- "):
            flush()
            item = line[2:]
        elif item is not None and line.startswith("  "):
            item += " " + line.strip()
        elif line.strip():
            flush()
            item = line  # a paragraph under a heading ("First version.")
        else:
            flush()
    flush()
    return list(releases.values())


def note(section: str, text: str) -> str:
    """One changelog item, wrapped for Debian's 80 columns (nfpm prints it after `  * `)."""
    return "\n".join(textwrap.wrap(f"{section}: {text}", 74, subsequent_indent="    ", break_on_hyphens=False))


def chglog(releases: list[Release], maintainer: str) -> list[dict]:
    return [{"semver": f"{r.version}-1", "date": r.date.strftime("%Y-%m-%dT%H:%M:%SZ"), "packager": maintainer,
             "deb": {"urgency": "medium", "distributions": ["unstable"]},
             "changes": [{"note": note(s, t)} for s, t in r.changes]} for r in releases]


def collection(releases: list[Release]) -> dict:
    kinds = {"Added": "minor_changes", "Changed": "minor_changes", "Fixed": "bugfixes", "Removed": "removed_features",
             "Deprecated": "deprecated_features", "Security": "security_fixes"}
    out: dict = {"ancestor": None, "releases": {}}
    for r in releases:
        changes: dict[str, list[str]] = {}
        for section, text in r.changes:
            changes.setdefault(kinds.get(section, "minor_changes"), []).append(text)
        out["releases"][r.version] = {"changes": changes, "release_date": r.date.strftime("%Y-%m-%d")}
    return out


def main(argv: list[str]) -> int:
    kind, source, version = argv[0], Path(argv[1]), argv[2]
    releases = parse(source.read_text(), version)
    if not releases or releases[0].version != version:
        raise SystemExit(f"changelog: {source}'s newest entry is not {version} (add `## [Unreleased]` or `## [{version}]`)")
    if kind == "chglog":
        data: object = chglog(releases, argv[3])
        out = Path(argv[4])
    elif kind == "collection":
        data, out = collection(releases), Path(argv[3])
    else:
        raise SystemExit(f"changelog: unknown kind {kind!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
