"""The rest of Blueshift's published API: every operation the document marks `x-fakeshift`.

An SDK calls more than the endpoints fakeshift emulates in depth (campaigns, templates, catalogs,
segments, ...). Each of those operations gets a route on the Blueshift blueprint, so auth, rate
limits, faults, the journal and the contract check apply to it exactly as to the others.

- `x-fakeshift: {answer: document}`: the answer is the document's example for the 200, when it
  is valid, or else a value sampled from its schema; built once, at import.
- `x-fakeshift: {answer: store, kind: K, action: create | read | update | list}`: simple
  storage per account (`objects.StoredObjects`). A create keeps the fields that were sent
  under a new uuid and answers it; a read of that uuid finds them; an update merges into them;
  a list shows them.

No handler here checks its request, so the contract check refuses one that breaks the document
(`contract.Operation.refuses_violations`).

Routes follow OpenAPI's matching: a concrete path wins over a template that would match it too
(`POST /email_templates/test_send.json` is not a template called "test_send", and `GET` there
is a 405 whose `Allow` is the concrete path's methods only), and a path parameter whose schema
is an `enum` matches nothing else (`/campaigns/{campaign_type}` is not `/campaigns/x.json`).
"""

from __future__ import annotations

import copy
import json
import re

from flask import Response, request
from werkzeug.routing import BaseConverter

from .http import answer
from .parsing import PARSED_BODY_KEY, json_object
from .samples import sample, valid

EXTENSION = "x-fakeshift"
_METHODS = ("get", "post", "put", "patch", "delete")
_PARAMETER = re.compile(r"\{([^{}]+)\}")


def _inline(node, document: dict):
    if isinstance(node, dict):
        if "$ref" in node:
            target = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _inline(target, document)
        return {key: _inline(value, document) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, document) for item in node]
    return node


def ok_answer(operation: dict, document: dict):
    """The 200 answer: the document's example when its schema accepts it, else a sample."""
    content = operation["responses"]["200"].get("content", {}).get("application/json")
    if content is None:
        return {"status": "ok"}
    schema = _inline(content.get("schema", {}), document)
    if "example" in content and valid(schema, content["example"]):
        return content["example"]
    return sample(schema)


def _body() -> dict:
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    return json_object(raw, request.mimetype, request.environ.get(PARSED_BODY_KEY))


def _fields(body: dict, wrapper: str | None) -> dict:
    """What an object keeps: the body, or the object under its wrapper key
    (`{"catalog": {...}}`)."""
    if wrapper and isinstance(body.get(wrapper), dict):
        return body[wrapper]
    return body


def _holder(value) -> dict | None:
    """The object in an answer that describes the stored object: the answer itself, or the one
    object it wraps (`{"campaign": {...}}`)."""
    if not isinstance(value, dict):
        return None
    if "uuid" in value or len(value) != 1:
        return value
    inner = next(iter(value.values()))
    return inner if isinstance(inner, dict) else value


def _first_list(value) -> list | None:
    """The list of objects in a list answer: the answer itself, or its first list field."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return next((v for v in value.values() if isinstance(v, list)), None)
    return None


class StoredOperation:
    """One storage-backed operation; `template` is its sampled 200 answer, `caller_account`
    opens the caller's account."""

    def __init__(self, spec: dict, template, path_parameters: list[str], caller_account):
        self.caller_account = caller_account
        self.kind = spec["kind"]
        self.action = spec["action"]
        self.wrapper = spec.get("wrapper")
        self.uuid_field = spec.get("uuid_field")
        self.template = template
        self.uuid_parameter = path_parameters[-1] if path_parameters else None

    def __call__(self, **view_args) -> Response:
        with self.caller_account() as (account, _now):
            objects = account.objects
            if self.action == "create":
                created = objects.create(self.kind, _fields(_body(), self.wrapper))
                return answer(self._created(created))
            if self.action == "list":
                return answer(self._listed(objects.list(self.kind)))
            object_uuid = str(view_args[self.uuid_parameter])
            if self.action == "read":
                return answer(self._read(objects.get(self.kind, object_uuid)))
            objects.update(self.kind, object_uuid, _fields(_body(), self.wrapper))
            return answer(self.template)

    def _created(self, created: dict):
        reply = copy.deepcopy(self.template)
        if self.uuid_field and isinstance(reply, dict):
            reply[self.uuid_field] = created["uuid"]
            return reply
        holder = _holder(reply)
        if holder is not None:
            holder.update(created)
            return reply
        return {"uuid": created["uuid"]}

    def _read(self, stored: dict):
        reply = copy.deepcopy(self.template)
        holder = _holder(reply)
        if holder is None:
            return stored
        holder.update(stored)
        return reply

    def _listed(self, stored: list[dict]):
        reply = copy.deepcopy(self.template)
        items = _first_list(reply)
        if items is None:
            return reply
        example = items[0] if items and isinstance(items[0], dict) else {}
        items[:] = [{**example, **each} for each in stored]
        return reply


def _document_answer(template) -> callable:
    body = json.dumps(template, separators=(",", ":"))

    def answer_from_document(**_view_args) -> Response:
        # Nothing is kept, but a body that is not a JSON object is refused as Blueshift's
        # parser refuses it, whether or not the operation documents one.
        _body()
        return Response(body, mimetype="application/json")

    return answer_from_document


class SegmentConverter(BaseConverter):
    """`<segment("test_send.json"):name>`: a path parameter (one segment, or part of one) that
    matches any text except where the rest of its segment, from the parameter on, is one of
    the arguments: those are concrete paths of the document, which OpenAPI matches first."""

    def __init__(self, url_map, *taken: str):
        super().__init__(url_map)
        if taken:
            self.regex = f"(?!(?:{'|'.join(re.escape(text) for text in taken)})\\Z)[^/]+"


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def _taken(path: str, paths) -> dict[str, list[str]]:
    """For each parameter of `path`, the rests of its segment that are another path's: the
    document's paths that are this one with a fixed segment where it has the parameter."""
    taken: dict[str, list[str]] = {}
    mine = _segments(path)
    for other in paths:
        theirs = _segments(other)
        if len(theirs) != len(mine):
            continue
        differ = [position for position, (a, b) in enumerate(zip(mine, theirs)) if a != b]
        if len(differ) != 1:
            continue
        segment, fixed = mine[differ[0]], theirs[differ[0]]
        names = _PARAMETER.findall(segment)
        if len(names) != 1 or "{" in fixed:
            continue
        prefix, suffix = segment.split("{" + names[0] + "}")
        if (fixed.startswith(prefix) and fixed.endswith(suffix)
                and len(fixed) > len(prefix) + len(suffix)):
            taken.setdefault(names[0], []).append(fixed[len(prefix):])
    return taken


def _quoted(text) -> str:
    return json.dumps(str(text))


def _flask_rule(path: str, schemas: dict[str, dict], taken: dict[str, list[str]]) -> str:
    """The Flask rule of a document path: `enum` parameters through werkzeug's `any`, the
    others through `segment`, which leaves out the concrete paths beside the template."""
    def converter(match) -> str:
        name = match.group(1)
        choices = schemas.get(name, {}).get("enum")
        if choices:
            return f"<any({', '.join(map(_quoted, choices))}):{name}>"
        if name in taken:
            return f"<segment({', '.join(map(_quoted, taken[name]))}):{name}>"
        return f"<{name}>"

    return _PARAMETER.sub(converter, path)


def _path_schemas(item: dict, operation: dict, document: dict) -> dict[str, dict]:
    parameters = [_inline(p, document)
                  for p in (*item.get("parameters", ()), *operation.get("parameters", ()))]
    return {p["name"]: p.get("schema", {}) for p in parameters if p.get("in") == "path"}


def register(blueprint, document: dict, caller_account) -> list[str]:
    """Add a route for every `x-fakeshift` operation; return their operation ids."""
    blueprint.record_once(
        lambda state: state.app.url_map.converters.setdefault("segment", SegmentConverter))
    added = []
    for path, item in document["paths"].items():
        taken = _taken(path, document["paths"])
        for method in _METHODS:
            operation = item.get(method)
            if operation is None or EXTENSION not in operation:
                continue
            spec = operation[EXTENSION]
            template = ok_answer(operation, document)
            if spec["answer"] == "store":
                view = StoredOperation(spec, template, _PARAMETER.findall(path), caller_account)
            else:
                view = _document_answer(template)
            rule = _flask_rule(path, _path_schemas(item, operation, document), taken)
            blueprint.add_url_rule(rule, endpoint=operation["operationId"],
                                   view_func=view, methods=[method.upper()])
            added.append(operation["operationId"])
    return added
