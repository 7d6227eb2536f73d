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
    # `detect` without typer and click (~0.03 s), when its args are ones hostagent/cli/direct.py models.
    if sys.argv[1:2] == ["detect"]:
        from hostagent.cli.direct import run

        code = run(sys.argv[1:])
        if code is not None:
            raise SystemExit(code)
    from hostagent.cli.app import main as app_main

    app_main()
