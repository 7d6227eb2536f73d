"""The packages' documentation, generated from the code: `man 8 hostagent` from the CLI (click's command
tree) and the settings table (hostagent/options.py), and the bash and zsh completion scripts that
`hostagent completion` prints. packaging/build.py runs it with a Python that imports hostagent.

    python packaging/docs.py OUTDIR     # writes OUTDIR/hostagent.8, OUTDIR/hostagent.bash, OUTDIR/_hostagent
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import click
import typer

from hostagent import __version__, options
from hostagent.cli.app import app


def roff(text: str) -> str:
    """Escape text for a roff line: backslashes, and a leading dot or quote would be a request."""
    text = " ".join(text.split()).replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def verbatim(line: str) -> str:
    """A line of a .nf block: spacing kept."""
    line = line.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + line if line[:1] in (".", "'") else line


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        if cmd.hidden:
            continue
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _option(param: click.Parameter) -> tuple[str, str]:
    if isinstance(param, click.Argument):
        return param.human_readable_name.upper(), ""
    assert isinstance(param, click.Option)
    names = ", ".join(param.opts + param.secondary_opts)
    if not param.is_flag:
        names += f" {param.metavar or param.type.name.upper()}"
    return names, param.help or ""


def manpage(date: str) -> str:
    root = typer.main.get_command(app)
    assert isinstance(root, click.Group)
    out = [f'.TH HOSTAGENT 8 "{date}" "hostagent {__version__}" "System Administration"',
           ".SH NAME", "hostagent \\- install the DeepFlow agent as a non\\-root service, and remove it cleanly",
           ".SH SYNOPSIS", ".B hostagent", "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]", ".br",
           ".B hostagent \\-\\-version", ".SH DESCRIPTION", roff(root.help or ""),
           "Every change is recorded in a manifest and", ".B uninstall",
           "reverts them in reverse, leaving the host as it was.", ".SH COMMANDS"]
    for path, cmd in _commands(root):
        out += [".SS " + roff("hostagent " + " ".join(path)), roff(cmd.help or "")]
        for param in cmd.params:
            if param.name == "help":
                continue
            names, text = _option(param)
            out += [".TP", ".B " + roff(names), roff(text) if text else "(argument)"]
    exec_help = subprocess.run([sys.executable, "-m", "hostagent", "exec", "--help"], check=True,
                               capture_output=True, text=True, env=dict(os.environ, COLUMNS="78")).stdout
    out += [".SS hostagent exec", "The launcher the service runs at every start of the agent:", ".PP", ".nf",
            *(verbatim(line) for line in exec_help.splitlines()), ".fi"]
    out += [".SH SETTINGS",
            "The settings of", ".BR install :", "each is a flag and a key of the YAML file given with",
            ".BR \\-\\-config\\-file", "(the setting's name below, with dashes; flags win over the file).",
            "The Ansible module takes the same names with underscores."]
    for s in options.INSTALL_SETTINGS:
        key = s.name.replace("_", "-")
        default = "" if s.default in (None, ()) else f" Default: {s.default}."
        out += [".TP", f".BR {roff(s.flag)} \" \\fI{s.type.upper()}\\fR\" \", key \" {roff(key)}",
                roff(s.help + default)]
    out += [".SH EXIT STATUS", ".TP", ".B 0", "success", ".TP", ".B 1",
            "the change failed and was rolled back, or drift was found", ".TP", ".B 2",
            "bad input: nothing was changed", ".SH FILES", ".TP", ".I /var/lib/hostagent/manifest.json",
            "what install recorded; uninstall reverts it", ".TP", ".I /var/cache/hostagent/",
            "the single file's unpacked copy (root's, checked at every start)", ".TP",
            ".I /etc/systemd/system/deepflow\\-agent.service", "the agent's unit, as hostagent wrote it",
            ".SH SEE ALSO", ".BR systemctl (1),", ".BR capabilities (7)", ""]
    return "\n".join(out)


def completion(shell: str) -> str:
    """What `hostagent completion SHELL` prints: the CLI's own script, not a copy of it."""
    return subprocess.run([sys.executable, "-m", "hostagent", "completion", shell], check=True,
                          capture_output=True, text=True).stdout


def main(outdir: Path) -> None:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or int(time.time())
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "hostagent.8").write_text(manpage(time.strftime("%Y-%m-%d", time.gmtime(epoch))))
    (outdir / "hostagent.bash").write_text(completion("bash"))
    (outdir / "_hostagent").write_text(completion("zsh"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
