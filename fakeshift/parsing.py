"""Reading Blueshift request bodies and parameters strictly, with errors that name the problem.

Everything here raises `InvalidField` (400, Blueshift's `{"errors": {field: [message]}}`) before
the domain is touched, so bad input never changes state.
"""

from __future__ import annotations

import json

from .errors import InvalidField

_JSON_TYPES = ("application/json",)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _no_constants(name):
    raise ValueError(f"{name} is not valid JSON")


def json_object(raw: bytes, mimetype: str) -> dict:
    """The body as a JSON object, or InvalidField("body", why not)."""
    if mimetype and mimetype not in _JSON_TYPES and not mimetype.endswith("+json"):
        raise InvalidField("body", f"Content-Type must be application/json, not {mimetype}")
    if not raw.strip():
        raise InvalidField("body", "a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidField("body", f"is not valid UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKey as exc:
        raise InvalidField("body", f"has a {exc}") from exc
    except RecursionError as exc:
        raise InvalidField("body", "is nested too deeply") from exc
    except ValueError as exc:
        raise InvalidField("body", f"is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidField("body", f"must be a JSON object, not {_type_name(value)}")
    return value


def _type_name(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def only_fields(body: dict, allowed) -> None:
    for key in body:
        if key not in allowed:
            raise InvalidField(key, "is not a recognised field")


def string_field(body: dict, name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidField(name, "can't be blank")
        if name in body:
            raise InvalidField(name, "must be a string, not null")
        return None
    if not isinstance(value, str):
        raise InvalidField(name, f"must be a string, not {_type_name(value)}")
    if not value.strip():
        raise InvalidField(name, "can't be blank")
    if "\x00" in value:
        raise InvalidField(name, "must not contain NUL characters")
    return value


def identifiers(body: dict, kinds) -> dict[str, str]:
    """The identifier fields present in the body (validated strings)."""
    found = {}
    for kind in kinds:
        value = string_field(body, kind)
        if value is not None:
            found[kind] = value
    return found


def flag(value, name: str) -> bool | None:
    """A boolean given as JSON true/false or as the strings "true"/"false" (any case)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidField(name, "must be true or false")
