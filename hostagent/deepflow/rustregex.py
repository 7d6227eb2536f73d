"""Interface regexes in the agent's dialect: the Rust `regex` crate (1.8, regex-syntax 0.7, in the agent).

The agent compiles `interface_regex` with `regex::Regex::new`; one it rejects makes it reject its whole
config (RuntimeConfigInvalid). A pattern passes here only when Python's `re` accepts it, it uses nothing
the Rust crate lacks, and nothing that the two read differently (nested sets, set operations, verbose
mode, possessive quantifiers): hostagent tests interface names with Python, the agent with Rust.
"""

from __future__ import annotations

import re
import warnings

_SUFFIX = " is not supported by the agent's Rust regex"
_DIFFERS = " means something else in the agent's Rust regex"  # Rust accepts it, reads it otherwise
_PERL = set("dDsSwWbBA")  # \A\b\B\d\D\s\S\w\W: the same in both
_CONTROL = set("afnrtv")
_GROUPS = (  # (prefix after "(?", construct named in the error)
    ("=", "look-ahead (?=...)"),
    ("!", "negative look-ahead (?!...)"),
    ("<=", "look-behind (?<=...)"),
    ("<!", "negative look-behind (?<!...)"),
    ("P=", "backreference (?P=name)"),
    (">", "atomic group (?>...)"),
    ("(", "conditional group (?(...)...)"),
    ("#", "comment group (?#...)"),
)
_FLAGS = re.compile(r"[aiLmsux]*(-[imsx]+)?[:)]")
_COUNT = re.compile(r"\{([0-9]*)(,([0-9]*))?\}")


def check_agent_regex(pattern: str) -> None:
    """Raise ValueError naming the construct when the agent could not use the pattern as Python does."""
    # The construct first: Pythons before 3.11 reject (?>...) and a*+ with a vaguer message.
    try:
        problem = _unsupported(pattern)
    except (IndexError, ValueError):  # cut short (a trailing \\, an open class): re says what is wrong
        problem = None
    if problem is not None:
        raise ValueError(f"{pattern!r}: {problem}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarning for nested sets, DeprecationWarning for late flags
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regex: {exc}") from None


def _unsupported(p: str) -> str | None:
    """The first construct Rust lacks or reads otherwise, with why."""
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            found, i = _escape(p, i, in_class=False)
        elif c == "[":
            found, i = _char_class(p, i)
        elif c == "(" and p.startswith("(?", i):
            found, i = _group(p, i)
        elif c == "{":
            found, i = _count(p, i)
        elif c in "*+?":
            found, i = _possessive(p, i + 1)
        else:
            found, i = None, i + 1
        if found:
            return found
    return None


def _escape(p: str, i: int, in_class: bool) -> tuple[str | None, int]:
    e = p[i + 1]
    if e.isdigit():
        digits = re.match(r"[0-9]+", p[i + 1 :])
        assert digits is not None
        return f"backreference or octal escape \\{digits.group(0)}" + _SUFFIX, i + 1 + len(digits.group(0))
    if e == "Z":
        return "\\Z (write \\z for the end of the text)" + _SUFFIX, i + 2
    if e == "N":
        return "named character \\N{...}" + _SUFFIX, i + 2
    if e in ("x", "u", "U"):  # hex digits follow: plain characters to this scanner
        return None, (p.index("}", i) + 1 if p.startswith("{", i + 2) else i + 2)  # \x{..}: re refuses it
    if e == "b" and in_class:
        return "backspace [\\b] in a class (write \\x08)" + _SUFFIX, i + 2
    if e in _PERL or e in _CONTROL or e == "z":
        return None, i + 2
    if not e.isascii():
        return f"escaped non-ASCII character \\{e}" + _SUFFIX, i + 2
    if e in "<>":  # regex 1.8 reserves them; from 1.10 they are word boundaries
        return f"escape \\{e}" + _SUFFIX, i + 2
    return None, i + 2  # any other escaped ASCII punctuation or space is the character itself


def _char_class(p: str, i: int) -> tuple[str | None, int]:
    j = i + 1
    if p.startswith("^", j):
        j += 1
    if p.startswith("]", j):
        j += 1  # a leading ] is a literal in both
    while p[j] != "]":
        if p[j] == "\\":
            found, j = _escape(p, j, in_class=True)
            if found:
                return found, j
            continue
        if p[j] == "[":
            return "[ inside a class (a nested set to Rust; write \\[)" + _DIFFERS, j
        if p[j : j + 2] in ("&&", "--", "~~"):
            return f"{p[j:j + 2]} inside a class (a set operation to Rust; escape one)" + _DIFFERS, j
        j += 1
    return None, j + 1


def _group(p: str, i: int) -> tuple[str | None, int]:
    rest = p[i + 2 :]
    for prefix, name in _GROUPS:
        if rest.startswith(prefix):
            return name + _SUFFIX, i + 2
    if rest.startswith("P<"):
        return None, p.index(">", i) + 1
    flags = _FLAGS.match(rest)
    if flags:
        spelled = flags.group(0)
        if spelled.endswith(")") and i > 0:  # Python < 3.11 applies it to the whole pattern, Rust from here on
            return f"inline flag group (?{spelled} after the start" + _DIFFERS, i + 2
        for flag, name in (("a", "ASCII flag (?a)" + _SUFFIX), ("L", "locale flag (?L)" + _SUFFIX),
                           ("x", "verbose flag (?x) (whitespace inside classes)" + _DIFFERS)):
            if flag in spelled:
                return name, i + 2
        return None, i + 2 + len(spelled)
    return None, i + 2


def _count(p: str, i: int) -> tuple[str | None, int]:
    m = _COUNT.match(p, i)
    if m is None or m.group(0) == "{}":
        return "a literal { (write \\{)" + _SUFFIX, i + 1
    if m.group(1) == "":
        return f"counted repetition {m.group(0)} without a minimum" + _SUFFIX, i + 1
    return _possessive(p, m.end())


def _possessive(p: str, j: int) -> tuple[str | None, int]:
    if p.startswith("+", j):
        return "possessive quantifier (+ after a repetition)" + _DIFFERS, j + 1
    return None, j + 1 if p.startswith("?", j) else j
