"""The one subprocess wrapper: argv only, a fixed environment, no stdin, pasteable --debug echo."""
from __future__ import annotations

import pytest

from hostagent.host import Host, run
from hostagent.errors import StepError


def test_fixed_environment_and_no_stdin(monkeypatch) -> None:
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.setenv("PATH", "/nonexistent")
    out = run.run(["sh", "-c", 'echo "$LANG $PATH"; cat'], timeout=5).stdout
    assert out == f"C.UTF-8 {run.ENV['PATH']}\n"  # and `cat` saw end of input at once


def test_debug_echoes_each_command_pasteably(monkeypatch, capsys) -> None:
    monkeypatch.setenv(run.DEBUG_ENV, "1")
    run.run(["echo", "two words", "it's"], timeout=5)
    assert capsys.readouterr().err == "+ echo 'two words' 'it'\"'\"'s'\n"


def test_failures_name_the_command() -> None:
    with pytest.raises(StepError, match=r"sh -c 'echo oops >&2; exit 3' failed \(3\): oops"):
        run.run(["sh", "-c", "echo oops >&2; exit 3"], timeout=5)
    with pytest.raises(StepError, match="no-such-tool not found"):
        run.run(["no-such-tool"])
    assert Host().output(["sh", "-c", "exit 1"]) is None
