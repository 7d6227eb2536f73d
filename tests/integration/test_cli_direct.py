"""`hostagent detect` run without typer and click (hostagent/cli/direct.py, issue 18): its parse is
click's for every argument list it accepts and declines the rest, and on a real netns its output,
errors and exit codes are the typer app's."""
from __future__ import annotations

import subprocess
import sys
from typing import Any, Iterator

import click
import pytest
import typer

from hostagent.cli import direct
from hostagent.cli.app import app
from hostagent.cli.complete_tree import PARAMS, TREE

DETECT_ARGS = [
    [], ["--json"], ["-q"], ["-v", "--debug"], ["--netns", "x"], ["--netns", "--json"], ["--netns", "a", "--netns", "b"],
    ["--inner"], ["--ring-blocks", "64"], ["--ring-blocks", " 12"], ["--ring-blocks", "1_000"], ["--ring-blocks", "+5"],
    ["--ring-blocks", "0x10"], ["--ring-blocks", "x"], ["--ring-blocks", ""], ["--ring-blocks"], ["--netns"],
    ["--other-netns"], ["--no-other-netns"], ["--no-other-netns", "--other-netns"], ["--json", "--json"],
    ["--help"], ["-h"], ["--json", "--help"], ["--netns=x"], ["--", "--json"], ["-qv"], ["extra"], ["--bogus"],
    ["--version"], ["-"], ["--inner", "--ring-blocks", "8", "--netns", "n1", "--no-other-netns", "--json", "-q"],
]


def _click_params(path: str, args: list[str]) -> dict[str, Any] | None:
    """What click makes of the args: the params, or None where it stops (an error, --help)."""
    command: Any = typer.main.get_command(app)
    for name in path.split():
        command = command.commands[name]
    try:
        with command.make_context(path, list(args)) as ctx:
            return dict(ctx.params)
    except (click.exceptions.Exit, click.UsageError):
        return None


@pytest.mark.parametrize("args", DETECT_ARGS, ids=" ".join)
def test_detect_parse_is_clicks_or_declines(args: list[str]) -> None:
    mine = direct.parse("detect", args)
    if mine is not None:
        assert mine == _click_params("detect", args)


def test_parse_declines_what_click_refuses_in_every_command() -> None:
    """Each leaf command's options, given bad, good and odd values: an accepted parse is click's."""
    accepted = 0
    for path, node in TREE.items():
        if not path or node["commands"]:
            continue
        for i in node["params"]:
            param = PARAMS[i]
            for name in param["names"]:
                for args in ([name], [name, "7"], [name, "x"], [name, "1.5"], [name, name]):
                    mine = direct.parse(path, args)
                    if mine is not None:
                        accepted += 1
                        assert mine == _click_params(path, args), (path, args)
    assert accepted > 50  # the rules do model most commands' options


def test_detect_parses_the_usual_lines_itself() -> None:
    assert direct.parse("detect", ["--netns", "n1", "--no-other-netns", "--json"]) == {
        "netns": "n1", "inner": False, "ring_blocks": 128, "other_netns": False,
        "as_json": True, "quiet": False, "verbose": False, "debug": False}
    assert direct.parse("detect", ["--help"]) is None and direct.parse("detect", ["--ring-blocks", "x"]) is None


@pytest.fixture
def netns(root: None) -> Iterator[str]:
    """A netns with a veth pair (one side in a second netns) and a bridge."""
    name, peer = "hatest-direct", "hatest-direct-peer"
    for ns in (name, peer):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip = ["ip", "-n", name, "link"]
        subprocess.run([*ip, "add", "br0", "type", "bridge"], check=True)
        subprocess.run([*ip, "add", "veth1a", "type", "veth", "peer", "name", "eth0", "netns", peer], check=True)
        subprocess.run([*ip, "set", "veth1a", "master", "br0"], check=True)
        yield name
    finally:
        for ns in (name, peer):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _run(path: str, args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    code = {"direct": "from hostagent.cli import main",
            "typer": "from hostagent.cli.app import main"}[path]
    script = f"import sys\n{code}\nsys.argv = ['hostagent', *sys.argv[1:]]\nmain()"
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, "-c", script, *args], stderr=subprocess.PIPE, text=True, check=False, **kw)


@pytest.mark.parametrize("extra", [[], ["--json"], ["-q"], ["--inner"], ["--ring-blocks", "4"], ["--json", "--ring-blocks", "4"]],
                         ids=" ".join)
def test_detect_output_is_the_typer_apps(netns: str, extra: list[str]) -> None:
    args = ["detect", "--netns", netns, *extra]
    fast, slow = _run("direct", args), _run("typer", args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert "veth1a" in fast.stdout or fast.returncode or "-q" in extra


def test_detect_errors_are_the_typer_apps(root: None) -> None:
    for args in (["detect", "--netns", "no-such-netns-here"], ["detect", "--netns", "../x", "--json"],
                 ["detect", "--ring-blocks", "x"], ["detect", "--bogus"]):
        fast, slow = _run("direct", args), _run("typer", args)
        assert fast.returncode == 2 and fast.stderr.count("\n") == 1, fast.stderr
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)


def test_detect_imports_neither_typer_nor_click(netns: str) -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "hostagent", "detect", "--netns", netns],
                         check=True, capture_output=True, text=True)
    assert "veth1a" in out.stdout
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines()}
    assert not imported & {"typer", "click", "hostagent.cli.app", "pyroute2.netns"}, sorted(imported & {"typer", "click"})


def test_a_closed_stdout_ends_as_in_the_typer_app(netns: str) -> None:
    """`hostagent detect | head -1`: exit 1 without a traceback, as click does on EPIPE."""
    import os

    for extra in ([], ["--json"]):
        results = []
        for path in ("direct", "typer"):
            read_end, write_end = os.pipe()
            os.close(read_end)  # every write fails with EPIPE
            try:
                results.append(_run(path, ["detect", "--netns", netns, *extra], stdout=write_end))
            finally:
                os.close(write_end)
        fast, slow = results
        assert (fast.returncode, fast.stderr) == (slow.returncode, slow.stderr) == (1, "")
