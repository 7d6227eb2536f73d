"""A completion TAB answered without importing typer or click (issue 18: a TAB <= 0.1 s).

click's protocol (`_HOSTAGENT_COMPLETE=bash_complete|zsh_complete`, `COMP_WORDS`, `COMP_CWORD`, as
the script `hostagent completion bash|zsh` speaks it) and click's rules (shell_completion's
_resolve_context/_resolve_incomplete, Command/Group.shell_complete, Choice), applied to TREE: the
command tree as click sees it, generated from the typer app into hostagent/cli/complete_tree.py
(`python -m hostagent.cli.complete > hostagent/cli/complete_tree.py`). tests/unit/test_complete_fast.py
checks that file is current and that every answer equals click's. Whatever the rules here do not
model exactly (`--opt=value`, `--`, short-option clusters, an eager option, an unknown word, another
instruction) returns None and click answers.
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Any, Optional

Item = tuple[str, Optional[str]]  # value, help


def _split(string: str) -> list[str]:
    """click.shell_completion.split_arg_string."""
    lex = shlex.shlex(string, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    out: list[str] = []
    try:
        out.extend(lex)
    except ValueError:
        out.append(lex.token)
    return out


def _resolve(tree: dict[str, Any], args: list[str]) -> tuple[str, set[str], int] | None:
    """The command path the args lead to, the params given on the command line, the positionals
    given to it; None where click's parser would do something not modelled here."""
    path, given, positional = "", set(), 0
    node = tree[path]
    options = _options(node)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("-") and len(arg) > 1:
            opt = options.get(arg)
            if opt is None or "=" in arg or opt["eager"]:
                return None  # unknown, `--`, a cluster, --opt=value, --help/--version: click's
            if opt["value"]:
                if i == len(args):
                    break  # its value is missing: click's parser stops here, the option not given
                i += 1
            given.add(opt["name"])
        elif node["commands"]:
            if arg not in node["commands"]:
                return None
            path = f"{path} {arg}".strip()
            node, given, positional = tree[path], set(), 0
            options = _options(node)
        else:
            positional += 1
            if positional > len(node["arguments"]):
                return None
    return path, given, positional


def _options(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: opt for opt in node["params"] for name in opt["names"]}


def complete(tree: dict[str, Any], args: list[str], incomplete: str) -> list[Item] | None:
    resolved = _resolve(tree, args)
    if resolved is None:
        return None
    path, given, positional = resolved
    node = tree[path]
    if incomplete == "=":
        incomplete = ""
    elif "=" in incomplete and incomplete.startswith("-"):
        return None
    if not incomplete.startswith("-"):
        last = _options(node).get(args[-1]) if args else None
        if last is not None and last["value"] and args[-1] in last["opts"]:
            return [(c, None) for c in last["choices"] if c.startswith(incomplete)]
        if positional < len(node["arguments"]):
            return [(c, None) for c in node["arguments"][positional]["choices"] if c.startswith(incomplete)]
    items = [(name, help_) for name, help_ in node["commands"].items() if name.startswith(incomplete)]
    if incomplete and not incomplete[0].isalnum():
        for opt in node["params"]:
            if not opt["hidden"] and (opt["multiple"] or opt["name"] not in given):
                items.extend((name, opt["help"]) for name in opt["names"] if name.startswith(incomplete))
    return items


def fast(instruction: str, environ: Any = os.environ) -> bool:
    """Answer the TAB and return True, or False to leave it to click."""
    shell, _, what = instruction.partition("_")
    if shell not in ("bash", "zsh") or what != "complete":
        return False
    try:
        from hostagent.cli.complete_tree import PARAMS, TREE
    except ImportError:
        return False
    words = _split(environ["COMP_WORDS"])
    cword = int(environ["COMP_CWORD"])
    tree = {path: {**node, "params": [PARAMS[i] for i in node["params"]]} for path, node in TREE.items()}
    items = complete(tree, words[1:cword], words[cword] if cword < len(words) else "")
    if items is None:
        return False
    if shell == "bash":
        lines = [f"plain,{value}" for value, _ in items]
    else:
        lines = []  # zsh: value escaped only where it has a help text, as click does
        for value, text in items:
            shown = value.replace(":", "\\:") if text else value
            lines.append(f"plain\n{shown}\n{text or '_'}")
    sys.stdout.buffer.write(("\n".join(lines) + "\n").encode())
    sys.stdout.flush()
    return True


def generate() -> str:
    """complete_tree.py's text, from the typer app as click resolves it."""
    import click
    import typer

    from hostagent.cli.app import app

    params_seen: dict[str, int] = {}  # one entry per distinct option: the tree names them by index
    lines = []

    def walk(ctx: click.Context, path: str) -> None:
        cmd = ctx.command
        params, arguments = [], []
        for p in cmd.get_params(ctx):
            if isinstance(p, click.Option):
                params.append({"name": p.name, "opts": list(p.opts), "names": [*p.opts, *p.secondary_opts],
                               "help": p.help, "value": not (p.is_flag or p.count), "multiple": p.multiple,
                               "eager": p.is_eager, "hidden": p.hidden, "choices": _choices(p.type, ctx),
                               # for hostagent/cli/direct.py: how click converts it, and its default
                               "type": p.type.name, **_direct(p)})
                assert p.nargs == 1 and p._custom_shell_complete is None, p.name  # not modelled
            else:
                assert isinstance(p, click.Argument) and p.nargs == 1, p.name  # not modelled
                arguments.append({"name": p.name, "choices": _choices(p.type, ctx)})
        commands: dict[str, str] = {}
        if isinstance(cmd, click.Group):
            assert not cmd.chain
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    commands[name] = sub.get_short_help_str()
        index = [params_seen.setdefault(repr(p), len(params_seen)) for p in params]
        lines.append(f"    {path!r}: {{'commands': {commands!r}, 'arguments': {arguments!r}, 'params': {index!r}}},\n")
        if isinstance(cmd, click.Group):
            for name in commands:
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                with sub.make_context(name, [], parent=ctx, resilient_parsing=True) as sub_ctx:
                    walk(sub_ctx, f"{path} {name}".strip())

    root = typer.main.get_command(app)
    with root.make_context("hostagent", [], resilient_parsing=True) as ctx:
        walk(ctx, "")
    return ('"""The command tree for hostagent/cli/complete.py, generated from the typer app:\n'
            '`python -m hostagent.cli.complete > hostagent/cli/complete_tree.py`. Do not edit."""\n'
            "# flake8: noqa\n# fmt: off\nfrom typing import Any\n\n"
            "PARAMS: list[dict[str, Any]] = [\n" + "".join(f"    {p},\n" for p in params_seen) + "]\n\n"
            "TREE: dict[str, Any] = {\n" + "".join(lines) + "}\n")


def _direct(param: Any) -> dict[str, Any]:
    """The default, and for a flag the value its primary names store (click's parser: a boolean flag with
    off-switches stores True, other flags their flag_value); each only where a plain value, which
    direct.py models alone."""
    out = {}
    if _plain(param.default):
        out["default"] = param.default
    if param.is_flag:
        on = True if param.is_bool_flag and param.secondary_opts else \
            getattr(param, "flag_activation_value", param.flag_value)  # click 8.5 resolves an unset flag_value there
        if _plain(on):
            out["on"] = on
    return out


def _plain(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, str)


def _choices(kind: Any, ctx: Any) -> list[str]:
    import click

    if isinstance(kind, click.Choice):
        assert kind.case_sensitive
        return [kind.normalize_choice(c, ctx) for c in kind.choices]
    assert type(kind).shell_complete is click.ParamType.shell_complete, kind  # no completion: []
    return []


if __name__ == "__main__":
    sys.stdout.write(generate())
