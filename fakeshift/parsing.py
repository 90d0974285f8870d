"""Reading Blueshift request bodies and parameters strictly, with errors that name the problem.

Everything here raises `InvalidField` (400, Blueshift's `{"errors": {field: [message]}}`) before
the domain is touched, so bad input never changes state.
"""

from __future__ import annotations

import json
import math
import re

from .errors import InvalidField

_JSON_TYPES = ("application/json",)
MAX_JSON_DEPTH = 64
# Where the contract check leaves a body it has already read strictly, so the handler's
# json_object does not parse the same bytes again.
PARSED_BODY_KEY = "fakeshift.parsed_body"
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def strict_json(raw: bytes):
    """The JSON value of `raw` read as json_object reads it (UTF-8, no duplicate keys, no NaN
    or Infinity, finite numbers); ValueError or RecursionError otherwise."""
    return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                      parse_constant=_no_constants, parse_float=_finite_float)


def json_object(raw: bytes, mimetype: str, parsed=None) -> dict:
    """The body as a JSON object, or InvalidField("body", why not). `parsed` is what
    strict_json(raw) already returned, if anything did."""
    if mimetype and mimetype not in _JSON_TYPES and not mimetype.endswith("+json"):
        raise InvalidField("body", f"Content-Type must be application/json, not {mimetype}")
    if not raw.strip():
        raise InvalidField("body", "a JSON object is required")
    value = parsed if parsed is not None else _parse(raw)
    if not isinstance(value, dict):
        raise InvalidField("body", f"must be a JSON object, not {_type_name(value)}")
    _check_nesting_and_text(value)
    return value


def _parse(raw: bytes):
    try:
        return strict_json(raw)
    except UnicodeDecodeError as exc:
        raise InvalidField("body", f"is not valid UTF-8 (byte {exc.start})") from exc
    except _DuplicateKey as exc:
        raise InvalidField("body", f"has a {exc}") from exc
    except RecursionError as exc:
        raise InvalidField("body", "is nested too deeply") from exc
    except ValueError as exc:
        raise InvalidField("body", f"is not valid JSON: {exc}") from exc


def _finite_float(text: str) -> float:
    # 1e999 parses to infinity, which JSON cannot carry back out: answers would be invalid JSON.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _check_nesting_and_text(value) -> None:
    """Refuse bodies nested deeper than MAX_JSON_DEPTH (a deep value stored as an attribute
    would make every later answer that shows it fail) and lone UTF-16 surrogates (valid JSON
    escapes, but not text: they cannot be written out as UTF-8)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise InvalidField("body", "contains a lone UTF-16 surrogate (\\ud800-\\udfff)")
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_JSON_DEPTH:
            raise InvalidField("body", f"is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in children:
            pending.append((key, depth))
            pending.append((child, depth + 1))


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


def text_fields(body: dict, names, where: str = "") -> None:
    """Each of these fields, where present, is a string (blank allowed); `where` prefixes the
    field's name in the error (`subscription_groups[0].`)."""
    for name in names:
        if name in body and not isinstance(body[name], str):
            raise InvalidField(f"{where}{name}",
                               f"must be a string, not {_type_name(body[name])}")


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
