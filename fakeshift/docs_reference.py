"""The configuration reference, generated from `fakeshift serve`'s own argparse definitions.

    python -m fakeshift.docs_reference > docs/configuration-reference.md

writes docs/configuration-reference.md: every flag of `fakeshift serve` with its environment
variable, its kind of value, its default and its help, in the parser's order. The file is
generated, never edited by hand; tests/test_docs.py regenerates it and fails when the committed
copy differs (a flag was added or changed without regenerating).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys

COMMAND = "python -m fakeshift.docs_reference > docs/configuration-reference.md"

# What a flag's `type=` function accepts, in a few words (a plain str flag is "text").
_KINDS = {
    "_port": "port (0 to 65535)",
    "_size": "size (`512k`, `1m`, bytes)",
    "_duration": "duration (`90s`, `2h`, `0`)",
    "_whole_seconds": "whole seconds (`10s`, at least 1s)",
    "_boolean": "`true` or `false`",
    "_at_least_one": "integer, at least 1",
    "_speed": "number above 0",
    "_positive_duration": "duration above 0 (`1s`, `200ms`)",
    "_durability": "`snapshot` or `aof`",
    "int": "integer",
    "float": "number",
}
_ENV = re.compile(r"^\[(FAKESHIFT_[A-Z0-9_]+)([^\]]*)\]\s*")
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|])")


@contextlib.contextmanager
def _without_fakeshift_environment():
    """The parser reads FAKESHIFT_* variables for its defaults: render the shipped defaults,
    not this shell's."""
    saved = {name: value for name, value in os.environ.items() if name.startswith("FAKESHIFT_")}
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(saved)


def serve_parser() -> argparse.ArgumentParser:
    from .cli import build_parser

    with _without_fakeshift_environment():
        parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["serve"]
    raise LookupError("fakeshift's parser has no serve command")


def _escape(text: str) -> str:
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text).replace("<", "&lt;").replace(">", "&gt;")


def _kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "none (a switch)"
    kind = _KINDS.get(getattr(action.type, "__name__", ""), "text")
    if action.nargs == "?":
        kind += "; alone: `true`"
    if isinstance(action, argparse._AppendAction):
        kind += "; repeatable"
    return kind


def _environment_and_help(action: argparse.Action) -> tuple[str, str]:
    text = " ".join((action.help or "").split())
    match = _ENV.match(text)
    if match is None:
        return "none", _escape(text)
    name, note = match.group(1), match.group(2).strip(" ,")
    environment = f"`{name}`" + (f" ({_escape(note)})" if note else "")
    return environment, _escape(text[match.end():])


def _default(action: argparse.Action) -> str:
    if action.default is None:
        return "unset"
    return f"`{action.default}`"


def rows() -> list[dict[str, str]]:
    """One entry per `fakeshift serve` flag, in the parser's order (help excluded)."""
    entries = []
    for action in serve_parser()._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        environment, help_text = _environment_and_help(action)
        entries.append({"flag": ", ".join(f"`{option}`" for option in action.option_strings),
                        "environment": environment, "kind": _kind(action),
                        "default": _default(action), "help": help_text})
    return entries


def render() -> str:
    """docs/configuration-reference.md, as the current parser defines it."""
    lines = [
        "# Configuration reference: `fakeshift serve`",
        "",
        "<!-- Generated from fakeshift.cli.build_parser(); do not edit by hand. Regenerate with:",
        f"     {COMMAND} -->",
        "",
        "Every flag of `fakeshift serve`, generated from the command's own argparse definitions;",
        "a test fails when this page and the parser differ. Regenerate it with",
        "",
        "```sh",
        COMMAND,
        "```",
        "",
        "Each flag also reads the environment variable named beside it; the flag wins.",
        "`fakeshift serve --help` prints the same list. A default of *unset* means the value comes",
        "from elsewhere: for the deletion delay and the group-delete default, the scenario's",
        "`settings`, then the built-in value the help names; for the others, nothing is set",
        "(see [Configuration](configuration.md)).",
        "",
        "| flag | environment variable | value | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for entry in rows():
        lines.append(f"| {entry['flag']} | {entry['environment']} | {entry['kind']} | "
                     f"{entry['default']} | {entry['help']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakeshift.docs_reference",
                                     description="Print docs/configuration-reference.md.")
    parser.parse_args(argv)
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
