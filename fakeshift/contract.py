"""The client contract: every request to a Blueshift endpoint is checked against
`openapi/blueshift.yaml`, and what breaks it is recorded as a violation.

The document is compiled once, when the app is built: one validator per operation for its path
parameters, its query and its JSON body, with every `$ref` inlined. A request is judged by
jsonschema-rs (compiled, about a microsecond); only a request that fails is explained again by
jsonschema, whose errors carry what a readable violation needs. The check runs before
authentication, so a request with a missing or bad `Authorization` header is recorded too (with
no account).

Default mode answers as Blueshift would and only records. Strict mode refuses a request that the
emulator would otherwise accept with 400 `{"errors": {location: ["message (rule: rule)"]}}`
before any state changes; requests Blueshift refuses anyway (no credentials, wrong method,
unknown path) keep their usual answer. Either way, `X-Fakeshift-Violation` names the broken rules.
"""

from __future__ import annotations

import itertools
import json
import re
import reprlib
import threading
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from werkzeug.exceptions import MethodNotAllowed

from .clock import VirtualClock, iso
from .journal import clip
from .parsing import PARSED_BODY_KEY, strict_json

DOCUMENTS = {"blueshift": "blueshift.yaml", "admin": "fakeshift-admin.yaml"}
API_PREFIX = "/api/"
VIOLATION_HEADER = "X-Fakeshift-Violation"
DEFAULT_VIOLATION_LIMIT = 10_000
# Rules that Blueshift enforces itself: strict mode leaves their usual answer (401/405/404) alone.
_REFUSED_ANYWAY = frozenset({"security", "method", "path"})
_JSON_TYPES = ("application/json",)
_FLASK_PARAMETER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
_OPENAPI_PARAMETER = re.compile(r"\{([^{}]+)\}")


@lru_cache(maxsize=None)
def document_text(name: str) -> str:
    """The YAML text of one of the project's OpenAPI documents (`blueshift` or `admin`)."""
    return (resources.files("fakeshift.openapi") / DOCUMENTS[name]).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def load_document(name: str) -> dict:
    return yaml.safe_load(document_text(name))


@dataclass(frozen=True)
class Problem:
    location: str
    rule: str
    message: str


def _inline_refs(node, document: dict):
    """A copy of `node` with every local `$ref` replaced by what it points to (the documents
    have no recursive schemas), so validation never resolves a reference at request time."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            merged = {**_inline_refs(target, document),
                      **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline_refs(merged, document)
        return {key: _inline_refs(value, document) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(item, document) for item in node]
    return node


# OpenAPI's `readOnly` says a property is only ever sent in answers; JSON Schema validators treat
# it as an annotation. In a request schema, such a property becomes one that no value satisfies.
_READ_ONLY_FIELD = {"not": {}, "description": "is set by Blueshift and cannot be written"}


def _forbid_read_only(node):
    """A copy of a request schema (refs inlined) in which every `readOnly` property is refused."""
    if isinstance(node, dict):
        if node.get("readOnly") is True:
            return _READ_ONLY_FIELD
        return {key: _forbid_read_only(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_forbid_read_only(item) for item in node]
    return node


@lru_cache(maxsize=1024)
def canonical_path(template: str) -> str:
    """A path template with its parameters unnamed, so `/x/<int:list_id>` (Flask) and
    `/x/{list_id}` (OpenAPI) compare equal whatever each side calls the parameter."""
    return _OPENAPI_PARAMETER.sub("{}", _FLASK_PARAMETER.sub("{}", template))


def _object_schema(parameters: list[dict]) -> dict:
    return {
        "type": "object",
        "properties": {p["name"]: p.get("schema", {}) for p in parameters},
        "required": [p["name"] for p in parameters if p.get("required")],
        # Blueshift's document lists every parameter an endpoint takes; another is a client bug.
        "additionalProperties": False,
    }


def _formats(node) -> set[str]:
    """The names of the formats a schema (refs inlined) uses."""
    if isinstance(node, dict):
        found = {node["format"]} if isinstance(node.get("format"), str) else set()
        return found.union(*(_formats(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_formats(item) for item in node))
    return set()


@lru_cache(maxsize=None)
def _conforms(name: str):
    """Whether a value is of format `name`, as jsonschema-rs reads it (values that are not
    strings, and formats it does not know, always are)."""
    return jsonschema_rs.validator_for({"format": name}, validate_formats=True).is_valid


def _format_checker(schema: dict) -> FormatChecker:
    """The formats of `schema` for jsonschema, judged by jsonschema-rs: the explanation never
    disagrees with the verdict (and jsonschema's own date-time needs a package we do not
    depend on)."""
    checker = FormatChecker(formats=())
    for name in _formats(schema):
        checker.checks(name)(_conforms(name))
    return checker


class SchemaCheck:
    """One compiled schema: a fast verdict, and the explanation when it says no."""

    __slots__ = ("is_valid", "explain")

    def __init__(self, schema: dict):
        # Formats are assertions: 2020-12 makes them annotations by default, but the document
        # uses them as rules (a campaign's `startdate` is a date-time, a tag context's
        # `resource_uuid` a uuid), and a client that sends "" or "tomorrow" there breaks it.
        self.is_valid = jsonschema_rs.Draft202012Validator(schema, validate_formats=True).is_valid
        self.explain = Draft202012Validator(
            schema, format_checker=_format_checker(schema)).iter_errors


class Operation:
    """One operation's compiled checks. Checks that cannot fail are not run: with no path
    parameters there is no path check (its object would always be empty), and an empty query
    is checked only when a query parameter is required."""

    __slots__ = ("operation_id", "path_names", "path_types", "query_types", "path_validator",
                 "query_validator", "query_required", "body_validator", "body_required",
                 "refuses_violations")

    def __init__(self, operation: dict, path_item: dict, document: dict):
        self.operation_id = operation["operationId"]
        # Answered from the document (fakeshift/surface.py): no handler checks the request,
        # so a request that breaks the document is refused here, as Blueshift would refuse it.
        self.refuses_violations = "x-fakeshift" in operation
        parameters = [_inline_refs(p, document)
                      for p in (*path_item.get("parameters", ()), *operation.get("parameters", ()))]
        in_path = [p for p in parameters if p["in"] == "path"]
        in_query = [p for p in parameters if p["in"] == "query"]
        self.path_names = [p["name"] for p in in_path]
        self.path_types = {p["name"]: p.get("schema", {}) for p in in_path}
        self.query_types = {p["name"]: p.get("schema", {}) for p in in_query}
        self.path_validator = SchemaCheck(_object_schema(in_path)) if in_path else None
        # Always compiled: an operation without query parameters still refuses unknown ones.
        self.query_validator = SchemaCheck(_object_schema(in_query))
        self.query_required = any(p.get("required") for p in in_query)
        body = operation.get("requestBody")
        self.body_validator = None
        self.body_required = False
        if body is not None:
            body = _inline_refs(body, document)
            self.body_required = bool(body.get("required"))
            schema = body["content"]["application/json"]["schema"]
            self.body_validator = SchemaCheck(_forbid_read_only(schema))


class Contract:
    """The compiled Blueshift document: which operation a request is, and what it breaks."""

    def __init__(self, document: dict):
        self.operations: dict[tuple[str, str], Operation] = {}
        for template, path_item in document["paths"].items():
            for method, operation in path_item.items():
                if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
                    key = (canonical_path(template), method.upper())
                    self.operations[key] = Operation(operation, path_item, document)

    def operation(self, rule: str, method: str) -> Operation | None:
        return self.operations.get((canonical_path(rule), method))

    def check(self, operation: Operation, view_args: dict, args, mimetype: str,
              raw_body: bytes, environ: dict | None = None) -> list[Problem]:
        """What the request breaks. A body read strictly is left in `environ` for the handler."""
        problems = []
        if operation.path_validator is not None:
            problems += self._check_path(operation, view_args)
        if args or operation.query_required:
            problems += _schema_problems(operation.query_validator,
                                         _typed_query(args, operation.query_types), "query")
        if operation.body_validator is not None:
            problems += self._check_body(operation, mimetype, raw_body, environ)
        return problems

    @staticmethod
    def _check_path(operation: Operation, view_args: dict) -> list[Problem]:
        # Some routes take any text (an id Blueshift's export types as a string, checked by
        # the handler), some a converter's value (int, UUID); the spec reads them as the query's
        # text is read, by position since the two sides may name a parameter differently.
        path = dict(zip(operation.path_names, (str(v) for v in view_args.values())))
        return _schema_problems(operation.path_validator,
                                _typed_query(path, operation.path_types),
                                "path")

    @staticmethod
    def _check_body(operation: Operation, mimetype: str, raw_body: bytes,
                    environ: dict | None) -> list[Problem]:
        if not raw_body.strip():
            if operation.body_required:
                return [Problem("body", "required", "a JSON object is required")]
            return []
        problems = []
        if mimetype not in _JSON_TYPES and not mimetype.endswith("+json"):
            shown = mimetype or "missing"
            problems.append(Problem("header.Content-Type", "content-type",
                                    f"must be application/json, not {shown}"))
        try:
            # What the handler will read: a body it accepts is the same value for json.loads.
            body = strict_json(raw_body)
        except (ValueError, RecursionError) as strict_error:
            try:
                body = json.loads(raw_body)
            except (ValueError, RecursionError) as exc:
                return [*problems, Problem("body", "json", f"is not valid JSON: {exc}")]
            # JSON only a lenient reader takes (a duplicate key, NaN, 1e999, UTF-16): no handler
            # accepts it, and an operation answered from the document must refuse it too. The
            # value json.loads made of it is still checked, so the other problems are named.
            reason = strict_error or type(strict_error).__name__
            problems.append(Problem("body", "json", f"is not valid JSON: {reason}"))
        else:
            if environ is not None:
                environ[PARSED_BODY_KEY] = body
        return problems + _schema_problems(operation.body_validator, body, "body")


def _typed_query(args, schemas: dict) -> dict:
    """Query text as the spec's types: the emulator reads booleans as true/false in any case.
    An array parameter (`asset_type[]=html&asset_type[]=subject`, form style, exploded) is
    every value given for it."""
    typed = {}
    for name in args:
        schema = schemas.get(name, {})
        if schema.get("type") == "array" and hasattr(args, "getlist"):
            item = schema.get("items", {})
            typed[name] = [_typed(text, item) for text in args.getlist(name)]
        else:
            typed[name] = _typed(args[name], schema)
    return typed


def _typed(text: str, schema: dict):
    kind = schema.get("type")
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind == "integer" and re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _schema_problems(check: SchemaCheck, instance, root: str) -> list[Problem]:
    try:
        if check.is_valid(instance):
            return []
    except UnicodeEncodeError:
        # JSON can escape half a surrogate pair ("\ud800"); that text is not Unicode at all.
        return [Problem(root, "json", "contains a lone UTF-16 surrogate, which is not valid "
                                      "Unicode")]
    problems = []
    for error in check.explain(instance):
        problems.extend(_describe(error, root))
    # jsonschema reports each missing required field as an error of its own, and each of
    # those names every missing field: say each once.
    return list(dict.fromkeys(problems))


# How much of a client's field name or value a violation shows. A mistake may be a megabyte
# long; what broke must still fit in a line, in the log and in a strict-mode answer alike.
SHOWN_CHARACTERS = 60
MESSAGE_CHARACTERS = 240
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = SHOWN_CHARACTERS
_SHOWN.maxlist = _SHOWN.maxdict = 3
_SHOWN.maxlevel = 2


def _shown(value) -> str:
    """A short repr of a client's value (strings, arrays and objects are cut with `...`)."""
    return _SHOWN.repr(value)


def _field(name) -> str:
    return clip(str(name), SHOWN_CHARACTERS)


def _location(root: str, path) -> str:
    location = root
    for part in path:
        location += f"[{part}]" if isinstance(part, int) else f".{_field(part)}"
    return location


_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               type(None): "null", int: "a number", float: "a number"}


def _describe(error, root: str) -> list[Problem]:
    """Readable problems for one jsonschema error, each at the field it concerns."""
    where = _location(root, error.absolute_path)
    rule = error.validator
    if rule == "required":
        return [Problem(f"{where}.{_field(name)}", rule, "is required")
                for name in error.validator_value if name not in error.instance]
    if rule == "additionalProperties":
        known = error.schema.get("properties", {})
        return [Problem(f"{where}.{_field(name)}", rule, "is not a recognised field")
                for name in error.instance if name not in known]
    if rule == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return [Problem(where, rule, f"must be {_article(expected)}, not "
                                     f"{_TYPE_NAMES.get(type(error.instance), 'a value')}")]
    if rule == "anyOf" and all("required" in branch and set(branch) <= {"type", "required"}
                               for branch in error.validator_value):
        names = ", ".join(name for branch in error.validator_value for name in branch["required"])
        return [Problem(where, rule, f"at least one of {names} is required")]
    description = error.schema.get("description")
    if rule in ("anyOf", "pattern", "not") and description:
        return [Problem(where, rule, description)]
    return [Problem(where, rule, clip(_counted(error) or _fallback_message(error),
                                      MESSAGE_CHARACTERS))]


def _counted(error) -> str | None:
    """What a size or choice rule says, without the instance it judged: jsonschema's own
    message for a 51-customer bulk call is the repr of all 51 customers."""
    rule, limit, instance = error.validator, error.validator_value, error.instance
    if rule in ("maxItems", "minItems"):
        # The array's field names what it holds: body.customers -> "51 customers".
        last = error.absolute_path[-1] if error.absolute_path else None
        noun = _field(last) if isinstance(last, str) else "items"
        bound = "at most" if rule == "maxItems" else "at least"
        return f"{len(instance)} {noun}; {bound} {limit} per call"
    if rule in ("maxLength", "minLength"):
        bound = "at most" if rule == "maxLength" else "at least"
        return f"{len(instance)} characters; {bound} {limit}"
    if rule == "enum":
        return f"must be one of: {', '.join(map(str, limit))}; not {_shown(instance)}"
    if rule == "const":
        return f"must be {_shown(limit)}, not {_shown(instance)}"
    if rule == "format":
        return f"must be a valid {limit}, not {_shown(instance)}"
    return None


def _fallback_message(error) -> str:
    # jsonschema writes the judged value into its messages as a repr; show it cut short.
    return error.message.replace(repr(error.instance), _shown(error.instance))


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


class ViolationLog:
    """The newest violations, oldest first; safe to use from waitress's threads."""

    def __init__(self, clock: VirtualClock, limit: int = DEFAULT_VIOLATION_LIMIT):
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: deque[dict] = deque(maxlen=limit)
        self._ids = itertools.count(1)

    def record(self, account: str | None, operation: str | None, method: str, path: str,
               problems: list[Problem]) -> None:
        time = iso(self._clock.now())
        with self._lock:
            for problem in problems:
                self._entries.append({
                    "id": next(self._ids), "time": time, "account": account,
                    "operation": operation, "method": method, "path": clip(path),
                    "location": clip(problem.location), "rule": problem.rule,
                    "message": clip(problem.message),
                })

    def list(self, account: str | None = None) -> list[dict]:
        """All violations, or one account's (`account=None` means all)."""
        with self._lock:
            return [dict(v) for v in self._entries if account is None or v["account"] == account]

    def clear(self, account: str | None = None) -> int:
        with self._lock:
            before = len(self._entries)
            if account is None:
                self._entries.clear()
            else:
                kept = [v for v in self._entries if v["account"] != account]
                self._entries.clear()
                self._entries.extend(kept)
            return before - len(self._entries)


class ContractCheck:
    """Judges requests under /api/ against the Blueshift document, and records what they break.
    Runs before authentication (fakeshift/pipeline.py), so that requests without valid
    credentials are recorded too."""

    def __init__(self, violations: ViolationLog, strict: bool):
        self.contract = Contract(load_document("blueshift"))
        self.violations = violations
        self.strict = strict

    def operation(self, rule: str, method: str) -> Operation | None:
        """The document's operation for a route, looked up once when the routes are built."""
        return self.contract.operation(rule, method)

    def judge(self, req, operation: Operation | None, account: str | None,
              authenticated: bool) -> tuple[str | None, dict | None]:
        """(the broken rules as X-Fakeshift-Violation names them, or None; the body of the 400
        that refuses the request, or None). `operation` None: the request reached no Blueshift
        operation, and its routing failure is the violation; a routed request is read whole
        (the body-size limit's 413) and checked."""
        problems = [] if authenticated else [
            Problem("header.Authorization", "security",
                    "needs HTTP Basic credentials with a valid API key")]
        failure = req.routing_exception
        if isinstance(failure, MethodNotAllowed):
            allowed = ", ".join(sorted(failure.valid_methods or ()))
            problems.append(Problem("method", "method",
                                    f"{req.method} is not served here; use {allowed}"))
        elif operation is None:
            if req.url_rule is None or failure is not None:
                problems.append(Problem("path", "path", "no Blueshift endpoint has this path"))
        else:
            # An empty query string needs no parsing: it has no parameters.
            args = req.args if req.query_string else {}
            problems += self.contract.check(operation, req.view_args or {}, args, req.mimetype,
                                            req.get_data(cache=True), req.environ)
        if not problems:
            return None, None
        self.violations.record(account, operation and operation.operation_id, req.method,
                               req.path, problems)
        rules = list(dict.fromkeys(p.rule for p in problems))
        refuses = self.strict or (operation is not None and operation.refuses_violations)
        if not refuses or _REFUSED_ANYWAY.intersection(rules):
            return ", ".join(rules), None
        errors: dict[str, list[str]] = {}
        for p in problems:
            errors.setdefault(p.location, []).append(f"{p.message} (rule: {p.rule})")
        return ", ".join(rules), {"errors": errors}
