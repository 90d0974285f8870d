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
(see `contract.refuses`).
"""

from __future__ import annotations

import copy
import json
import re

from flask import Response, request

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


def _flask_rule(path: str) -> str:
    return _PARAMETER.sub(lambda match: f"<{match.group(1)}>", path)


def register(blueprint, document: dict, caller_account) -> list[str]:
    """Add a route for every `x-fakeshift` operation; return their operation ids."""
    added = []
    for path, item in document["paths"].items():
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
            blueprint.add_url_rule(_flask_rule(path), endpoint=operation["operationId"],
                                   view_func=view, methods=[method.upper()])
            added.append(operation["operationId"])
    return added
