import sys

if sys.argv[1:2] == ["exec"]:
    # The unit runs `hostagent exec` at every start: skip the CLI's (typer's) import cost.
    from hostagent.launcher import main as launcher_main

    raise SystemExit(launcher_main(sys.argv[2:]))

from hostagent.cli import main  # noqa: E402

main()
