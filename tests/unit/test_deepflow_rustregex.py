"""Interface regexes in the agent's dialect, checked against the Rust `regex` crate itself where it is installed.

The oracle is regex-rs (Python bindings to the Rust crate, regex-syntax 0.7 like the agent's regex 1.8.3;
on this corpus it agrees with regex-syntax 0.7.2 itself); crates.io is out of reach here, so no cargo
helper. Each case also pins the verdict, so the suite says something without the oracle too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from hostagent.deepflow.rustregex import check_agent_regex

regex_rs: Any
try:
    import regex_rs
except ImportError:  # depends on the machine
    regex_rs = None

# (pattern, the agent's Rust regex accepts it): our verdict must be the same.
AGREE = [
    (r"^(tap.*|cali.*|veth.*|eth.*|en[osipx].*|lxc.*|lo|[0-9a-f]+_h)$", True),  # DeepFlow's default
    (r"^eth\d+$", True),
    (r"^(eth|ens)[0-9]{1,3}(\.[0-9]+)?$", True),
    (r"^(?i:ETH)[0-9]+$", True),
    (r"(?i)^bond[0-9]{2,}$", True),
    (r"^(?P<kind>eth|en)\w+$", True),
    (r"^(?P<é>a)$", True),
    (r"^[]a-]$", True),
    (r"^[^]a]$", True),
    (r"^[\x00-\x7f]+$", True),
    (r"^\u00e9\U0001F600$", True),
    (r"^a\@b\'c\ d\_e\%f\#g\&h\~i$", True),
    (r"[\.\-\]\[\^]", True),
    (r"\Aeth0\b", True),
    (r"\d\D\s\S\w\W\B", True),
    (r"a{2}b{2,}c{2,5}?d*?e+?f??", True),
    (r"(?:)*|()+", True),
    (r"[a||b]", True),
    (r"", True),
    (r"\a\f\t\n\r\v", True),
    (r"a(?=b)", False),
    (r"a(?!b)", False),
    (r"(?<=a)b", False),
    (r"(?<!a)b", False),
    (r"(a)\1", False),
    (r"(?P<n>a)(?P=n)", False),
    (r"(?>a)", False),
    (r"(a)?(?(1)b|c)", False),
    (r"(?#comment)a", False),
    (r"eth0\Z", False),
    (r"\0", False),
    (r"\101", False),
    (r"\N{DIGIT ONE}", False),
    (r"\<eth", False),
    (r"eth\>", False),
    (r"[\<]", False),
    (r"\é", False),
    (r"[\b]", False),
    (r"(?a)\w+", False),
    (r"a{", False),
    (r"a{x}", False),
    (r"x{1,2", False),
    (r"{", False),
    (r"a{}", False),
    (r"a{,3}", False),
]

# Rust accepts these but reads them otherwise than Python, or Python rejects them: refused all the same.
STRICTER = [
    (r"[[:alpha:]]+", "nested set"),
    (r"[a-z&&[^aeiou]]", "set operation"),
    (r"[a&&b]", "set operation"),
    (r"[a~~b]", "set operation"),
    (r"(?x)eth [0-9]", "verbose"),
    (r"a*+", "possessive"),
    (r"a++b", "possessive"),
    (r"a{2}+", "possessive"),
    (r"(?<name>a)", "not a valid regex"),
    (r"\pL+", "not a valid regex"),
    (r"\x{7f}", "not a valid regex"),
    (r"a(?i)b", "inline flag group (?i)"),
    (r"^*", "not a valid regex"),
]


def ours(pattern: str) -> str | None:
    try:
        check_agent_regex(pattern)
    except ValueError as exc:
        return str(exc)
    return None


def rust_accepts(pattern: str) -> bool:
    if regex_rs is None:
        if os.environ.get("CI") == "true" and sys.version_info < (3, 13):  # no wheels for newer Pythons
            pytest.fail("regex-rs (the Rust regex oracle) is not installed; it is in the test extras")
        pytest.skip("regex-rs not installed")
    try:
        regex_rs.Regex(pattern)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("pattern,accepted", AGREE)
def test_verdict(pattern: str, accepted: bool) -> None:
    message = ours(pattern)
    assert (message is None) == accepted, message
    if message is not None:
        assert message.endswith("is not supported by the agent's Rust regex"), message


@pytest.mark.parametrize("pattern,accepted", AGREE)
def test_rust_agrees(pattern: str, accepted: bool) -> None:
    assert rust_accepts(pattern) == accepted


@pytest.mark.parametrize("pattern,why", STRICTER)
def test_stricter_than_rust(pattern: str, why: str) -> None:
    message = ours(pattern)
    assert message is not None and why in message
    if "valid regex" not in message:
        assert message.endswith("means something else in the agent's Rust regex")
    assert rust_accepts(pattern)


def test_message_names_the_construct() -> None:
    assert ours(r"^(?!lo)eth") == "'^(?!lo)eth': negative look-ahead (?!...) is not supported by the agent's Rust regex"
    assert "backreference or octal escape \\1" in (ours(r"(a)\1") or "")
    assert "write \\z" in (ours(r"a\Z") or "")
