"""The command line (typer): app, output and the one failure path, agent commands, net commands."""
from hostagent.cli.app import main

__all__ = ["main"]
