"""Answers built from a JSON Schema: the value an SDK would expect when the document gives no
example for a whole response.

The value is deterministic (the same document gives the same answer on every run), uses each
property's own `example`, `default` or `enum` where it has one, and is checked against the
schema by the caller. Plain Python: no Flask.
"""

from __future__ import annotations

from jsonschema import Draft202012Validator

_MAX_DEPTH = 12
_FORMATS = Draft202012Validator.FORMAT_CHECKER
_STRING_FORMATS = {
    "date-time": "2026-01-01T00:00:00.000Z",
    "date": "2026-01-01",
    "time": "00:00:00",
    "email": "customer@example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "uri": "https://example.com/",
    "url": "https://example.com/",
}


def sample(schema: dict, depth: int = 0):
    """A value valid against `schema` (OpenAPI 3.1 / JSON Schema 2020-12, `$ref`s inlined).

    A document's own examples are used only where they are valid: published documents often
    give a string example for an integer, or a list for a string."""
    for given in _given_values(schema):
        if valid(schema, given):
            return given
    if "properties" not in schema:
        for keyword in ("oneOf", "anyOf"):
            if keyword in schema:
                return _first_valid(schema, schema[keyword], depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema or "allOf" in schema else "string"
    value = _BUILDERS[kind](schema, depth)
    # allOf parts add what they describe; an object's own properties are already all there.
    for part in schema.get("allOf", ()):
        extra = sample(part, depth + 1)
        if isinstance(value, dict) and isinstance(extra, dict):
            value = {**extra, **value}
    return value


def _given_values(schema: dict) -> list:
    given = [schema[keyword] for keyword in ("const", "example", "default") if keyword in schema]
    return given + list(schema.get("examples") or ())[:1] + list(schema.get("enum") or ())[:1]


def valid(schema: dict, value) -> bool:
    """Valid, formats included: a generated client parses a `date` field as a date."""
    return Draft202012Validator(schema, format_checker=_FORMATS).is_valid(value)


def _first_valid(whole: dict, candidates: list, depth: int):
    """The first candidate's value that the whole schema accepts (with oneOf, a value that
    more than one branch accepts is not valid)."""
    values = [sample(candidate, depth + 1) for candidate in candidates]
    return next((value for value in values if valid(whole, value)), values[0])


def _object(schema: dict, depth: int) -> dict:
    if depth >= _MAX_DEPTH:
        return {}
    return {name: sample(part, depth + 1)
            for name, part in schema.get("properties", {}).items()}


def _array(schema: dict, depth: int) -> list:
    if depth >= _MAX_DEPTH or "items" not in schema:
        return []
    return [sample(schema["items"], depth + 1)] * max(1, schema.get("minItems", 1))


def _string(schema: dict, _depth: int) -> str:
    text = _STRING_FORMATS.get(schema.get("format"), "string")
    return text.ljust(schema.get("minLength", 0), "x")


def _integer(schema: dict, _depth: int) -> int:
    return int(schema.get("minimum", 1))


def _number(schema: dict, _depth: int) -> float:
    return float(schema.get("minimum", 1))


_BUILDERS = {
    "object": _object, "array": _array, "string": _string, "integer": _integer,
    "number": _number, "boolean": lambda _schema, _depth: True,
    "null": lambda _schema, _depth: None,
}
