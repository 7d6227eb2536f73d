"""The completion TAB answered without typer (hostagent/cli/complete.py) gives exactly click's answer
(issue 18): the generated tree is current, and for every command, every option, choice values and
odd input, both shells' output equals what click prints from the typer app."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from hostagent.cli import complete

REPO = Path(__file__).resolve().parents[2]


def test_the_generated_tree_is_current():
    assert (REPO / "hostagent/cli/complete_tree.py").read_text() == complete.generate(), (
        "the CLI changed: python -m hostagent.cli.complete > hostagent/cli/complete_tree.py")


def _lines() -> list[str]:
    """Command lines to complete (the last word is the incomplete one; a trailing space: empty)."""
    from hostagent.cli.complete_tree import PARAMS, TREE

    lines = ["", "-", "--", "--v", "i", "k8s", "x", "--version ", "-h ", "completion ", "completion b",
             "completion bash ", "completion bash -", "k8s-sync ", "k8s-sync r", "k8s-sync --", "nope ",
             "detect --netns", "detect --netns ", "detect --netns=x", "detect --netns=", "detect --json -",
             "detect --json --", "detect -- -", "detect -q -", "detect -qv -", "detect --no-other-netns --",
             "detect --netns --json -", "detect --netns x --", "install --controller-ip a --controller-",
             "group-config --schema ", "group-config --schema l", "group-config --schema legacy --sch",
             "group-config --schema=", "group-config --schema =", "detect extra ", "detect _", "detect 'a b",
             'detect "--json', "install --user=x --", "k8s-sync run --tls --", "k8s-sync run --no-tls --t",
             "status -", "doctor --timeout ", "doctor --timeout 3 ", "uninstall -y --", "install --bogus -"]
    for path, node in TREE.items():
        prefix = f"{path} " if path else ""
        lines += [prefix, f"{prefix}-", f"{prefix}--"]
        for opt in (PARAMS[i] for i in node["params"]):
            for name in opt["names"]:
                lines += [f"{prefix}{name[:3]}", f"{prefix}{name} ", f"{prefix}{name} -", f"{prefix}{name}"]
    return lines


def _click(shell: str, line: str) -> str:
    words = line.split(" ")
    env = {**os.environ, "_HOSTAGENT_COMPLETE": f"{shell}_complete", "COMP_WORDS": "hostagent " + line,
           "COMP_CWORD": str(len(words))}
    code = "import sys; from hostagent.cli.app import main; sys.argv = ['hostagent']; main()"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_every_answer_is_clicks(shell: str):
    lines = sorted(set(_lines()))
    # click in one process per shell: every line through its own shell_complete
    script = (
        "import os, sys, json\n"
        "from click.shell_completion import shell_complete\n"
        "import typer\nfrom hostagent.cli.app import app, COMPLETE_VAR\n"
        "cmd = typer.main.get_command(app)\nout = []\n"
        "import io, contextlib\n"
        "for line in json.loads(sys.stdin.read()):\n"
        "    os.environ['COMP_WORDS'] = 'hostagent ' + line\n"
        "    os.environ['COMP_CWORD'] = str(len(line.split(' ')))\n"
        "    buf = io.BytesIO()\n"
        "    w = io.TextIOWrapper(buf, encoding='utf-8', write_through=True)\n"
        "    with contextlib.redirect_stdout(w):\n"
        f"        shell_complete(cmd, {{}}, 'hostagent', COMPLETE_VAR, '{shell}_complete')\n"
        "    out.append(buf.getvalue().decode())\n"
        "print(json.dumps(out))\n")
    import json

    clicks = json.loads(subprocess.run([sys.executable, "-c", script], input=json.dumps(lines), capture_output=True,
                                       text=True, check=True).stdout)
    answered = 0
    for line, expected in zip(lines, clicks):
        words = complete._split("hostagent " + line)
        cword = len(line.split(" "))
        env = {"COMP_WORDS": "hostagent " + line, "COMP_CWORD": str(cword)}
        buf = io.BytesIO()
        w = io.TextIOWrapper(buf, encoding="utf-8", write_through=True)
        with redirect_stdout(w):
            done = complete.fast(f"{shell}_complete", env)
        if done:
            answered += 1
            assert buf.getvalue().decode() == expected, (line, words)
    assert answered > 0.8 * len(lines), answered  # the fast path answers nearly all (the rest: click)
    assert sum(1 for c in clicks if c.strip()) > len(lines) / 2  # and click answered something


def test_the_whole_cli_answers_a_tab_as_click_does():
    """Through `hostagent` itself (the fast path), against click called directly."""
    for line in ["inst", "detect --", "group-config --schema ", "k8s-sync "]:
        env = {**os.environ, "_HOSTAGENT_COMPLETE": "bash_complete", "COMP_WORDS": "hostagent " + line,
               "COMP_CWORD": str(len(line.split(" ")))}
        got = subprocess.run([sys.executable, "-m", "hostagent"], env=env, capture_output=True, text=True, check=False)
        assert got.returncode == 0 and got.stdout == _click("bash", line), line


def test_a_tab_imports_neither_typer_nor_click():
    env = {**os.environ, "_HOSTAGENT_COMPLETE": "zsh_complete", "COMP_WORDS": "hostagent detect --", "COMP_CWORD": "2"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "hostagent"], env=env, capture_output=True,
                         text=True, check=True)
    assert "--netns" in out.stdout
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines()}
    assert not imported & {"typer", "click"}, sorted(imported)
