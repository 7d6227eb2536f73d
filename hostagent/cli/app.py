"""The hostagent command line: the typer app, --version, shell completion, and main()."""
from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Optional

import click
import typer

from hostagent import __version__
from hostagent.cli import agent, k8s, net
from hostagent.cli.output import usage_error

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Install the DeepFlow agent as a non-root service, and take it back out cleanly.",
    epilog="The launcher the unit runs at every agent start: `hostagent exec --help`. "
           "Exit codes: 0 ok, 1 failed (rolled back) or drift found, 2 bad input (nothing changed).",
)


COMPLETE_VAR = "_HOSTAGENT_COMPLETE"


def _version(value: bool) -> None:
    if value:
        print(f"hostagent {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    """Install the DeepFlow agent as a non-root service, and take it back out cleanly."""


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"


@app.command()
def completion(shell: Shell = typer.Argument(..., help="bash or zsh")) -> None:
    """Print the shell completion script: `source <(hostagent completion bash)`."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell.value)
    assert cls is not None
    print(cls(typer.main.get_command(app), {}, "hostagent", COMPLETE_VAR).source())


agent.register(app)
net.register(app)
k8s.register(app)


def main() -> None:
    argv = sys.argv[1:]
    command = typer.main.get_command(app)
    instruction = os.environ.get(COMPLETE_VAR)
    if instruction:  # click's protocol, as the script `completion` prints speaks it
        from click.shell_completion import shell_complete

        raise SystemExit(shell_complete(command, {}, "hostagent", COMPLETE_VAR, instruction))
    try:
        rv = command.main(args=argv, prog_name="hostagent", standalone_mode=False)
    except click.UsageError as e:
        raise SystemExit(usage_error(argv, e)) from None
    except click.Abort:
        print("hostagent: aborted", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(rv if isinstance(rv, int) else 0)
