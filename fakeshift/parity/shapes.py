"""Body shapes: what a JSON answer looks like once every value is taken out.

Two servers never answer the same uuids and times, so parity compares what a client's parsing
depends on instead: keys, types and nesting. The notation is JSON itself, so that a shapes file
can be read, reviewed and committed:

- a scalar is its type name: "string", "integer", "number", "boolean" or "null"; several types
  seen at one place are joined, sorted: "integer|null";
- an object is an object of its keys' shapes. "?key" marks a key that only some of the merged
  objects had (array items) or, in a documented file, one the documentation lists but may leave
  out. "*" is the shape of every key not listed: a map keyed by data, not a record;
- an array is [] when empty, else a one-item array holding the merged shape of its items;
- "any" (documented files only) fits anything;
- EMPTY and NOT_JSON stand for bodies that are not a JSON value at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

EMPTY = "(empty)"
NOT_JSON = "(not JSON)"
ANY = "any"
OPTIONAL = "?"
OTHER_KEYS = "*"
MISSING = "(missing)"
# Blueshift keys these objects by field name ({"errors": {"email": ["can't be blank"]}}), and
# the field named depends on the server's wording, not on the shape a client parses.
MAP_KEYS = frozenset({"errors", "error_data"})


def body_shape(body: bytes):
    """The shape of a raw HTTP body."""
    if not body.strip():
        return EMPTY
    try:
        return shape_of(json.loads(body))
    except ValueError:  # also UnicodeDecodeError
        return NOT_JSON


def shape_of(value, as_map: bool = False):
    if isinstance(value, dict):
        if as_map:
            shapes = [shape_of(item) for item in value.values()]
            return {OTHER_KEYS: _merge_all(shapes)} if shapes else {}
        return {key: shape_of(item, key in MAP_KEYS) for key, item in value.items()}
    if isinstance(value, list):
        shapes = [shape_of(item) for item in value]
        return [_merge_all(shapes)] if shapes else []
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _merge_all(shapes: list):
    merged = shapes[0]
    for shape in shapes[1:]:
        merged = merge(merged, shape)
    return merged


def _split_key(key: str) -> tuple[str, bool]:
    if key != OTHER_KEYS and key.startswith(OPTIONAL):
        return key[len(OPTIONAL):], True
    return key, False


def _keys(shape: dict) -> dict[str, tuple[bool, object]]:
    """name -> (optional, shape)."""
    keys = {}
    for key, value in shape.items():
        name, optional = _split_key(key)
        keys[name] = (optional, value)
    return keys


def _kinds(shape) -> set[str]:
    if isinstance(shape, dict):
        return {"object"}
    if isinstance(shape, list):
        return {"array"}
    return set(shape.split("|"))


def merge(first, second):
    """One shape that describes values of both shapes (the items of one array)."""
    if first == second:
        return first
    if isinstance(first, dict) and isinstance(second, dict):
        first_keys, second_keys = _keys(first), _keys(second)
        merged = {}
        for name in [*first_keys, *(k for k in second_keys if k not in first_keys)]:
            if name in first_keys and name in second_keys:
                optional = first_keys[name][0] or second_keys[name][0]
                shape = merge(first_keys[name][1], second_keys[name][1])
            else:
                optional = True
                shape = (first_keys.get(name) or second_keys[name])[1]
            merged[(OPTIONAL if optional and name != OTHER_KEYS else "") + name] = shape
        return merged
    if isinstance(first, list) and isinstance(second, list):
        if not first or not second:
            return first or second
        return [merge(first[0], second[0])]
    return "|".join(sorted(_kinds(first) | _kinds(second)))


def describe(shape) -> str:
    """A shape in a few words, for a report cell."""
    if isinstance(shape, dict):
        return "object"
    if isinstance(shape, list):
        return f"array of {describe(shape[0])}" if shape else "empty array"
    return shape


@dataclass(frozen=True)
class ShapeDifference:
    path: str  # "customer.uuid", "users[]", "$" for the whole body
    reference: str
    candidate: str


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def compare(reference, candidate, documented: bool = False,
            path: str = "") -> list[ShapeDifference]:
    """Where `candidate` differs from `reference`.

    An observed reference (a live server, or a file it recorded) must be matched exactly. A
    documented one (written from Blueshift's pages) is a description: its "?key"s may be absent,
    its unions are the types allowed, a "number" admits integers, and an empty array fits it."""
    here = path or "$"
    if documented and reference == ANY:
        return []
    if isinstance(reference, dict) and isinstance(candidate, dict):
        return _compare_objects(reference, candidate, documented, path)
    if isinstance(reference, list) and isinstance(candidate, list):
        if reference and candidate:
            return compare(reference[0], candidate[0], documented, f"{path}[]" if path else "[]")
        if reference == candidate or (documented and not candidate):
            return []
        return [ShapeDifference(here, describe(reference), describe(candidate))]
    if isinstance(reference, str) and isinstance(candidate, str):
        allowed, seen = _kinds(reference), _kinds(candidate)
        if documented and "number" in allowed:
            allowed |= {"integer"}
        if seen == allowed or (documented and seen <= allowed):
            return []
    return [ShapeDifference(here, describe(reference), describe(candidate))]


def _compare_objects(reference: dict, candidate: dict, documented: bool,
                     path: str) -> list[ShapeDifference]:
    differences = []
    reference_keys, candidate_keys = _keys(reference), _keys(candidate)
    for name, (optional, shape) in reference_keys.items():
        if name == OTHER_KEYS:
            continue
        where = _child(path, name)
        if name not in candidate_keys:
            if OTHER_KEYS in candidate_keys:
                differences += compare(shape, candidate_keys[OTHER_KEYS][1], documented, where)
            elif not (documented and optional):
                differences.append(ShapeDifference(where, describe(shape), MISSING))
            continue
        candidate_optional, candidate_shape = candidate_keys[name]
        if candidate_optional and not optional:
            differences.append(ShapeDifference(where, "in every item", "in some items only"))
        elif optional and not candidate_optional and not documented:
            differences.append(ShapeDifference(where, "in some items only", "in every item"))
        differences += compare(shape, candidate_shape, documented, where)
    for name, (_optional, shape) in candidate_keys.items():
        if name in reference_keys and name != OTHER_KEYS:
            continue
        where = _child(path, name) if name != OTHER_KEYS else _child(path, "<any key>")
        if OTHER_KEYS in reference_keys:
            differences += compare(reference_keys[OTHER_KEYS][1], shape, documented, where)
        else:
            differences.append(ShapeDifference(where, MISSING, describe(shape)))
    return differences
