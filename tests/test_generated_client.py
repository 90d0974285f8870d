"""A client generated from openapi/blueshift.yaml by openapi-python-client imports, types every
request body as a model of its own, and speaks to a real `fakeshift serve`: every operation of
the document is called through it and its answers are read back as the generated models."""

from __future__ import annotations

import base64
import datetime
import enum
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import typing
import uuid
from pathlib import Path

import attrs
import pytest
import requests
import yaml

from fakeshift.contract import _inline_refs
from fakeshift.samples import sample

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "openapi" / "blueshift.yaml"
PACKAGE = "blueshift_client"
# The generator and the formatter it runs afterwards (ruff) are installed beside this Python.
BIN = Path(sys.executable).parent


def _operations() -> dict[str, dict]:
    """operationId -> operation, for every operation of the document."""
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return {operation["operationId"]: operation
            for item in document["paths"].values() for operation in item.values()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The generated package, imported from a fresh directory (generation needs no network)."""
    out = tmp_path_factory.mktemp("generated")
    completed = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(DOCUMENT),
         "--output-path", str(out / PACKAGE), "--meta", "none", "--fail-on-warning"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    # --fail-on-warning: a construct the generator skips or cannot format fails here, loudly.
    assert completed.returncode == 0, completed.stdout + completed.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _endpoint_modules(package) -> dict[str, object]:
    """operationId -> the generated module that calls it (one module per operation)."""
    api = importlib.import_module(f"{package.__name__}.api")
    return {info.name.rsplit(".", 1)[-1]: importlib.import_module(info.name)
            for info in pkgutil.walk_packages(api.__path__, f"{api.__name__}.")
            if not info.ispkg}


def test_every_generated_module_imports(generated):
    imported = [importlib.import_module(info.name).__name__
                for info in pkgutil.walk_packages(generated.__path__, f"{PACKAGE}.")]
    assert f"{PACKAGE}.models" in imported
    assert set(_endpoint_modules(generated)) == set(_operations())


def test_every_request_body_is_a_model_with_the_documents_fields(generated):
    modules = _endpoint_modules(generated)
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    with_body = {name: operation for name, operation in _operations().items()
                 if "requestBody" in operation}
    assert {"forget", "delete_customer", "unforget", "identify"} <= set(with_body)
    for name, operation in with_body.items():
        model = _body_model(modules[name])
        assert attrs.has(model), f"{name}: the body is typed {model!r}, not a model"
        schema = _inline_refs(operation["requestBody"]["content"]["application/json"]["schema"],
                              document)
        documented = set(schema.get("properties", {})).union(
            *(part.get("properties", {}) for part in schema.get("allOf", ())))
        assert documented, name
        # Typed fields, not extra properties: the generator renames some (`_bsft_x` becomes
        # `field_bsft_x`), so compare the JSON names each model writes from its own fields.
        instance = model.from_dict(sample(schema))
        extra = set(getattr(instance, "additional_properties", {}))
        assert documented <= set(instance.to_dict()) - extra, name


def _body_model(module):
    """The model a generated operation takes as its body (an optional body is `Model | Unset`)."""
    hint = typing.get_type_hints(module.sync_detailed)["body"]
    models = [part for part in typing.get_args(hint) if attrs.has(part)] or [hint]
    return models[0]


class Calls:
    """The generated operations, each called through `sync_detailed` and remembered."""

    def __init__(self, modules: dict, client):
        self.modules = modules
        self.client = client
        self.called: set[str] = set()

    def __call__(self, name: str, status: int = 200, **kwargs):
        self.called.add(name)
        response = self.modules[name].sync_detailed(client=self.client, **kwargs)
        assert response.status_code == status, (name, response.content)
        return response


def test_every_operation_through_the_generated_client(generated, live_server):
    models = importlib.import_module(f"{PACKAGE}.models")
    client_module = importlib.import_module(f"{PACKAGE}.client")
    key = f"generated-{uuid.uuid4().hex}"
    client = client_module.AuthenticatedClient(
        base_url=live_server.url, token=base64.b64encode(f"{key}:".encode()).decode(),
        prefix="Basic", raise_on_unexpected_status=True)
    call = Calls(_endpoint_modules(generated), client)

    body = models.IdentifyRequest(email="jane@example.com", customer_id="c-1")
    body["firstname"] = "Jane"
    created = call("identify", body=body).parsed
    assert isinstance(created, models.CustomerEnvelope)
    jane = created.customer
    assert (jane.email, jane.customer_id, jane["firstname"]) == ("jane@example.com", "c-1",
                                                                 "Jane")
    assert isinstance(jane.uuid, uuid.UUID)

    read = call("get_customer", uuid=jane.uuid).parsed
    assert (read.customer.uuid, read.customer.created_at) == (jane.uuid, jane.created_at)
    found = call("search_customers", email="JANE@example.com").parsed
    assert [user.uuid for user in found.users] == [jane.uuid]

    nobody = models.CustomerFields()
    nobody["nickname"] = "nobody"
    bulk = call("bulk_identify", body=models.BulkRequest(
        customers=[models.CustomerFields(email="kim@example.com"), nobody])).parsed
    # Only the customer without an identifier comes back, with its error beside it.
    assert [failed.to_dict() for failed in bulk.customers] == [{"nickname": "nobody"}]
    assert [error.status for error in bulk.errors] == [400]
    assert "user_identifier_missing" in bulk.errors[0].error_data.additional_properties
    (kim,) = call("search_customers", email="kim@example.com").parsed.users

    custom_list = call("create_list", body=models.CreateListRequest(
        name=f"list {key}", description="generated", source=models.CreateListRequestSource.EMAIL,
    )).parsed
    assert (custom_list.description, custom_list.source, custom_list.user_count) == (
        "generated", models.CustomListSource.EMAIL, 0)
    member = models.ListIdentifier(identifier_key=models.ListIdentifierIdentifierKey.EMAIL,
                                   identifier_value="jane@example.com")
    assert call("add_user_to_list", list_id=custom_list.id, body=member).parsed.status == "ok"
    details = call("list_details", list_id=custom_list.id).parsed
    assert (details.id, details.user_count) == (custom_list.id, 1)
    removed = call("remove_user_from_list", list_id=custom_list.id, body=member)
    assert (removed.parsed.status, removed.headers["X-Fakeshift-Removed"]) == ("ok", "1")

    # Groups cannot be created through the API: the control plane seeds one with both customers.
    seeded = requests.post(f"{live_server.url}/_fakeshift/accounts/{key}/seed", timeout=10, json={
        "groups": [{"group_id": "grp_generated", "members": [{"uuid": str(jane.uuid)},
                                                              {"uuid": str(kim.uuid)}]}]})
    assert seeded.status_code == 200, seeded.text
    left = call("remove_group_user", group_id="grp_generated", user_uuid=kim.uuid).parsed
    assert (left.status, left.group_id, left.user_uuid) == ("success", "grp_generated", kim.uuid)
    deleted_group = call("delete_group", group_id="grp_generated", delete_users=False)
    assert deleted_group.parsed.field_bsft_delete_status == "success"
    assert deleted_group.parsed.group.user_uuids == [str(jane.uuid)]
    assert deleted_group.headers["X-Fakeshift-Scheduled"] == "0"

    deleted = call("delete_customer", body=models.DeleteRequest(
        email="kim@example.com", delete_all_matching_customers=True))
    assert (deleted.parsed.status, deleted.headers["X-Fakeshift-Scheduled"]) == ("ok", "1")

    refused = call("forget", status=400, body=models.ForgetRequest()).parsed
    assert isinstance(refused, models.FieldErrors)
    assert refused.errors["identifier"] == [
        "at least one of customer_id, email, cookie, device_id is required"]
    forgotten = call("forget", body=models.ForgetRequest(customer_id="c-1"))
    assert (forgotten.parsed.status, forgotten.parsed.customer.is_forgotten) == ("ok", True)
    assert forgotten.headers["X-Fakeshift-Forgotten"] == "1"
    pending = call("get_customer", uuid=jane.uuid).parsed.customer
    assert (pending.deletion_pending, pending.deletion_reason) == (
        True, models.CustomerDeletionReason.FORGET)
    assert pending.forgotten_at == forgotten.parsed.customer.forgotten_at
    suppressed = call("identify", body=models.IdentifyRequest(customer_id="c-1"))
    assert isinstance(suppressed.parsed, models.StatusOk)
    assert suppressed.headers["X-Fakeshift-Suppressed"] == "true"
    lifted = call("unforget", body=models.UnforgetRequest(customer_id="c-1"))
    assert (lifted.parsed.status, lifted.headers["X-Fakeshift-Unsuppressed"]) == ("ok", "1")

    # Merge, the list bulk calls, seed lists and events.
    lee = call("identify", body=models.IdentifyRequest(customer_id="keep",
                                                       email="lee@example.com")).parsed.customer
    call("identify", body=models.IdentifyRequest(customer_id="dup", email="dup@example.com"))
    merged = call("merge_customers", body=models.MergeRequest(customer_id="dup",
                                                              bsft_new_customer_id="keep"))
    assert (merged.parsed.status, merged.headers["X-Fakeshift-Merged"]) == ("ok", "1")
    seeds = call("create_list", body=models.CreateListRequest(
        name=f"seeds {key}", is_seed_list=models.CreateListRequestIsSeedList.VALUE_1)).parsed
    emails = models.ListBulkRequestIdentifierKey.EMAIL
    added = call("bulk_add_users_to_list", list_id=seeds.id, async_=True,
                 body=models.ListBulkRequest(identifier_key=emails,
                                             identifier_values=["lee@example.com",
                                                                "nobody@example.com"])).parsed
    assert [error.identifier_value for error in added.errors] == ["nobody@example.com"]
    (seed_list,) = call("seed_lists").parsed
    assert (seed_list.id, seed_list.user_count, seed_list.is_exported) == (seeds.id, 1, False)
    too_many = call("bulk_remove_users_from_list", status=413, list_id=seeds.id,
                    body=models.ListBulkRequest(identifier_key=emails,
                                                identifier_values=["lee@example.com"] * 26))
    assert too_many.parsed.error == "You can remove maximum 25 users in one api call"
    removed = call("bulk_remove_users_from_list", list_id=seeds.id, body=models.ListBulkRequest(
        identifier_key=emails, identifier_values=["lee@example.com"]))
    assert (removed.parsed.errors, removed.headers["X-Fakeshift-Removed"]) == ([], "1")
    overwritten = call("overwrite_list", list_id=seeds.id, body=models.OverwriteListRequest(
        s3_file_path="s3://bucket/import/custom_lists/seeds.csv"))
    assert overwritten.parsed.status == "ok"

    event = models.EventRequest(event="purchase", customer_id="keep")
    event["sku"] = "ABC-1"
    assert call("send_event", body=event).parsed.status == "OK"
    bulk_events = call("send_bulk_events", body=models.BulkEventsRequest(events=[
        models.EventRequest(event="app_install", device_id="d-1")])).parsed
    assert (bulk_events.status, bulk_events.count) == ("ok", 1)
    (shown,) = call("show_events", uuid=lee.uuid).parsed
    assert (shown.event, shown.user_uuid, shown["sku"]) == ("purchase", str(lee.uuid), "ABC-1")
    history = call("event_history", event_name="app_install", limit=5).parsed
    assert [item["device_id"] for item in history["app_install"]] == ["d-1"]

    _call_the_rest_of_the_api(call)
    assert call.called == set(_operations())


_ACTION_ORDER = {"create": 0, "read": 1, "update": 2, "list": 3}


def _call_the_rest_of_the_api(call: Calls) -> None:
    """Every operation answered from the document, with a request built from it: creates first,
    so that reads and updates find the uuid a create answered, and lists show it."""
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    rest = [(name, operation) for name, operation in _operations().items()
            if "x-fakeshift" in operation]
    assert len(rest) > 50
    rest.sort(key=lambda pair: _ACTION_ORDER.get(pair[1]["x-fakeshift"].get("action"), 4))
    created: dict[str, str] = {}
    for name, operation in rest:
        spec = operation["x-fakeshift"]
        kwargs = _arguments(call.modules[name], operation, document)
        if spec.get("action") in ("read", "update"):
            in_path = [p["name"] for p in operation["parameters"] if p["in"] == "path"]
            kwargs[_argument(call.modules[name], in_path[-1])] = created[spec["kind"]]
        response = call(name, **kwargs)
        answer = response.parsed
        assert answer is not None, name
        if spec.get("action") == "create":
            created[spec["kind"]] = _uuid_in(answer.to_dict() if hasattr(answer, "to_dict")
                                             else answer, spec["kind"])
        elif spec.get("action") == "read":
            assert created[spec["kind"]] in str(response.content), name


def _arguments(module, operation: dict, document: dict) -> dict:
    """Keyword arguments for a generated operation, from the document's own examples."""
    hints = typing.get_type_hints(module.sync_detailed)
    kwargs = {}
    for parameter in operation.get("parameters", ()):
        parameter = _inline_refs(parameter, document)
        argument = _argument(module, parameter["name"])
        if argument in hints and (parameter.get("required") or parameter["in"] == "path"):
            value = sample(parameter.get("schema", {}))
            kwargs[argument] = _typed(hints[argument], value)
    if "requestBody" in operation:
        schema = _inline_refs(operation["requestBody"]["content"]["application/json"]["schema"],
                              document)
        kwargs["body"] = _body_model(module).from_dict(sample(schema))
    return kwargs


def _typed(hint, value):
    """A document example as the type the generated argument declares."""
    for kind in (*typing.get_args(hint), hint):
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return kind(value)
        if kind is datetime.datetime:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if kind is datetime.date:
            return datetime.date.fromisoformat(value)
        if kind is uuid.UUID:
            return uuid.UUID(value)
    return value


def _argument(module, name: str) -> str:
    """The generated function's argument for a document parameter (`TEMPLATE_UUID` is
    `template_uuid`, `syncUpdateWithProductData` is `sync_update_with_product_data`)."""
    def plain(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())
    arguments = inspect.signature(module.sync_detailed).parameters
    return next(argument for argument in arguments if plain(argument) == plain(name))


def _uuid_in(answer, kind: str) -> str:
    """The uuid a create answered: `uuid` or `<kind>_uuid`, at the top or in the object the
    answer wraps."""
    if isinstance(answer, dict):
        for key in ("uuid", f"{kind}_uuid"):
            if isinstance(answer.get(key), str):
                return answer[key]
        for value in answer.values():
            found = _uuid_in(value, kind)
            if found:
                return found
    return ""
