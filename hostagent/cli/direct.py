"""Commands run without importing typer or click (issue 18: `detect` at 10k links <= 2x `ip`; the two
cost ~0.03 s of it).

Their arguments are parsed by click's rules from the command tree generated from the typer app
(hostagent/cli/complete_tree.py, the one completion uses). Whatever the rules here do not model
(--help, `--opt=value`, `--`, short-option clusters, an unknown option, a missing value or one its
type refuses, extra arguments) returns None and the typer app answers, with click's own messages.
tests/integration/test_cli_direct.py checks every parse against click's and the command's output against
the typer path's.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

from hostagent.cli.output import Report, execute, options

CONVERT: dict[str, Callable[[str], Any]] = {"text": str, "integer": int, "float": float}  # click's STRING/INT/FLOAT


def parse(path: str, args: list[str]) -> Optional[dict[str, Any]]:
    """The command's params from its args, as click's parser and types give them; None: click's to answer."""
    from hostagent.cli.complete_tree import PARAMS, TREE

    node = TREE.get(path)
    if node is None or node["commands"] or node["arguments"]:
        return None
    every = [PARAMS[i] for i in node["params"]]
    by_name = {name: p for p in every for name in p["names"]}
    params = [p for p in every if not p["eager"]]  # --help: click's, when given
    if any("default" not in p or p["multiple"] or (not p["value"] and "on" not in p) for p in params):
        return None
    values: dict[str, Any] = {}
    rest = iter(args)
    for arg in rest:
        param = by_name.get(arg)
        if param is None or param["eager"]:
            return None
        if not param["value"]:
            values[param["name"]] = param["on"] if arg in param["opts"] else False
            continue
        convert = CONVERT.get(param["type"])
        raw = next(rest, None)
        if convert is None or raw is None:
            return None
        try:
            values[param["name"]] = convert(raw)
        except ValueError:
            return None
    return {p["name"]: values.get(p["name"], p["default"]) for p in params}


def detect(netns: Optional[str], inner: bool, ring_blocks: int, other_netns: bool,
           as_json: bool, quiet: bool, verbose: bool, debug: bool) -> int:
    """`hostagent detect`: the body both the typer command and the direct path run."""
    style = options(as_json, quiet, verbose, debug)
    found: list[Any] = []

    def body() -> Report:
        from hostagent.net.detect import detect_layout

        found.append(detect_layout(netns, scan_other_netns=other_netns, inner=inner, ring_blocks=ring_blocks))
        # The JSON form only when printed: at 10k links it costs as much as the dump.
        return Report("detect", data=found[0].to_dict() if style.as_json else None)

    def human(r: Report) -> None:
        from hostagent.net.report import render_layout

        print(render_layout(found[0]))

    return execute("detect", style, body, human)


COMMANDS: dict[str, Callable[..., int]] = {"detect": detect}


def run(argv: list[str]) -> Optional[int]:
    """The exit code of a command run here, or None: the typer app runs it."""
    command = COMMANDS.get(argv[0]) if argv else None
    if command is None:
        return None
    values = parse(argv[0], argv[1:])
    if values is None:
        return None
    try:
        return command(**values)
    except BrokenPipeError:  # as click: exit 1 quietly; stdout to /dev/null so the exit's flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # as click's Abort and the app's main()
        print("\nhostagent: aborted", file=sys.stderr)
        return 1
