"""The human-readable report of a detected layout."""

from __future__ import annotations

from hostagent.net.model import Layout


def _names(names: tuple[str, ...], limit: int = 12) -> str:
    if not names:
        return "-"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def render_layout(layout: Layout) -> str:
    """Human-readable report: verdict, evidence, capture table, recommendation."""
    lines = [f"netns: {layout.netns or '(this process)'}"]
    lines.append(f"layout: {layout.verdict}" + (f" ({', '.join(layout.families)})" if layout.verdict == "mixed" else ""))
    lines.append(f"default route via: {_names(layout.default_route_nics)}")
    lines.append(f"node NICs: {_names(layout.node_nics)}")
    kinds: dict[str, int] = {}
    for link in layout.links:
        kinds[link.kind] = kinds.get(link.kind, 0) + 1
    lines.append(f"links: {len(layout.links)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})")
    lines.append(
        f"other netns: {len(layout.other_netns)} with links into this netns, {layout.unrelated_netns_count} unrelated"
    )
    lines.append("evidence:")
    lines += [f"  [{e.source}] {e.family}: {e.detail}" for e in layout.evidence] or ["  (none: no pod or VM NICs)"]
    if layout.capture:
        lines.append("capture (pod-to-pod traffic):   same node            cross node")
        for view in layout.capture:
            note = f"  -- {view.note}" if view.note else ""
            lines.append(f"  {view.point:<28} {view.same_node:<20} {view.cross_node}{note}")
    rec = layout.recommendation
    lines.append("recommendation:")
    lines.append(f"  interface_regex: {rec.interface_regex}")
    lines.append(f"  capture_mode: {rec.capture_mode} ({'virtual mirror' if rec.capture_mode == 1 else 'local'})")
    lines += [f"  - {reason}" for reason in rec.reasons]
    check = rec.regex_check
    lines.append(f"  regex matches: {_names(check.matched)}")
    lines.append(f"  regex misses (NICs that carry traffic): {_names(check.missed)}")
    lines.append(f"  not captured on purpose: {_names(check.ignored)}")
    if rec.inner_capture:
        inner = rec.inner_capture
        lines.append(
            f"  inner netns capture: regex {inner['inner_interface_regex']}, ring_blocks {inner['ring_blocks']}"
            f" -> {inner['memory_note']}"
        )
    lines += [f"warning: {w}" for w in layout.warnings]
    return "\n".join(lines)
