"""Patterns that clients send: fault rules' `path_regex` and `path` globs, journal `path` globs.

Any key may send a fault header, so a pattern must never be able to stall the server. Python's
`re` backtracks (`(0|00)+x` against forty zeros takes seconds while holding the GIL); RE2 runs in
time linear in the input and refuses the constructs that need backtracking (back-references,
look-around). Patterns are short (MAX_PATTERN_LENGTH) and each compiled program has a small
memory budget, so RE2's own cache of 128 programs stays small too.
"""

from __future__ import annotations

import re2

MAX_PATTERN_LENGTH = 1024
_PROGRAM_MEMORY = 1 << 20


class PatternError(ValueError):
    """A pattern that cannot be used; the message says why."""


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = _PROGRAM_MEMORY
    options.log_errors = False
    return options


_OPTIONS = _options()


def compile_regex(pattern: str):
    """An RE2 program for a regular expression (use `.fullmatch`)."""
    _check_length(pattern)
    return _compile(pattern)


def _check_length(pattern: str) -> None:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"at most {MAX_PATTERN_LENGTH} characters")


def _compile(regex: str):
    try:
        return re2.compile(regex, _OPTIONS)
    except re2.error as exc:
        raise PatternError(f"not a valid RE2 regular expression (no back-references or "
                           f"look-around): {_reason(exc)}") from exc


def compile_glob(pattern: str):
    """An RE2 program for a shell glob as fnmatch reads it: `*`, `?`, `[abc]`, `[!abc]`.

    fnmatch.translate's output is not RE2 syntax (it uses atomic groups to avoid backtracking,
    which RE2 has no need for), hence this translation."""
    _check_length(pattern)
    return _compile(_glob_to_regex(pattern))


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _glob_to_regex(glob: str) -> str:
    parts, i = [], 0
    while i < len(glob):
        char = glob[i]
        i += 1
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        elif char == "[":
            end = _class_end(glob, i)
            if end is None:
                parts.append(re2.escape("["))
                continue
            members = glob[i:end]
            negated = members.startswith("!")
            if negated:
                members = members[1:]
            members = "".join("\\" + c if c in "\\[]^" else c for c in members)
            parts.append(f"[{'^' if negated else ''}{members}]")
            i = end + 1
        else:
            parts.append(re2.escape(char))
    return "(?s:" + "".join(parts) + ")"


def _class_end(glob: str, start: int) -> int | None:
    """Where the `[...]` opened before `start` closes; a `]` first (or after `!`) is a member."""
    i = start
    if i < len(glob) and glob[i] == "!":
        i += 1
    if i < len(glob) and glob[i] == "]":
        i += 1
    end = glob.find("]", i)
    return end if end >= 0 else None


def _reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
