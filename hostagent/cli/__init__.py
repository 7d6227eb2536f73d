"""The command line (typer): app, output and the one failure path, agent commands, net commands."""
from __future__ import annotations

import os
import sys


def main() -> None:
    # The unit runs `hostagent exec` at every agent start: skip typer's import cost for it.
    if sys.argv[1:2] == ["exec"]:
        from hostagent.launcher import main as launcher_main

        raise SystemExit(launcher_main(sys.argv[2:]))
    # `--version` pays for nothing else (typer and the command tree cost ~0.05 s).
    if sys.argv[1:] == ["--version"]:
        from hostagent import __version__

        print(f"hostagent {__version__}")
        raise SystemExit(0)
    # A completion TAB from the generated tree (hostagent/cli/complete.py); click answers the rest.
    instruction = os.environ.get("_HOSTAGENT_COMPLETE")
    if instruction:
        from hostagent.cli.complete import fast

        if fast(instruction):
            raise SystemExit(0)
    from hostagent.cli.app import main as app_main

    app_main()
