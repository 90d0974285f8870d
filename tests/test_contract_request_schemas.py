"""The request schemas of openapi/blueshift.yaml say exactly what the emulator accepts, in the
shapes code generators can type: the "at least one identifier" rules sit in `allOf`, the fields
Blueshift sets are `readOnly`, and the contract check still reads them as before (strict mode's
400 names the same rule with the same message)."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT, Blueshift
from fakeshift import create_app
from fakeshift.models import RESERVED_FIELDS

DOCUMENT = yaml.safe_load((ROOT / "openapi" / "blueshift.yaml").read_text(encoding="utf-8"))
READ_ONLY = sorted(name for name, schema in
                   DOCUMENT["components"]["schemas"]["CustomerFields"]["properties"].items()
                   if schema.get("readOnly"))
ANY_IDENTIFIER = "at least one of email, customer_id, cookie, device_id is required (rule: anyOf)"


@pytest.fixture
def strict():
    return Blueshift(create_app({"strict_contract": True}).test_client())


@pytest.mark.parametrize("path, body, message", [
    ("/api/v1/customers/forget", {}, ANY_IDENTIFIER),
    # The flag is a field of its own, not an identifier: alone, it is not enough.
    ("/api/v1/customers/delete", {"delete_all_matching_customers": True}, ANY_IDENTIFIER),
    ("/api/v1/customers/unforget", {}, ANY_IDENTIFIER),
    ("/api/v1/customers", {"firstname": "Jane"},
     "at least one of email, customer_id, cookie, device_id, uuid is required (rule: anyOf)"),
])
def test_a_body_without_an_identifier_is_refused_naming_them(strict, path, body, message):
    response = strict.post(path, json=body)
    assert response.status_code == 400
    assert response.json == {"errors": {"body": [message]}}


@pytest.mark.parametrize("path, body", [
    ("/api/v1/customers/forget", {"cookie": "c-1"}),
    ("/api/v1/customers/delete", {"device_id": "d-1", "delete_all_matching_customers": "TRUE"}),
    ("/api/v1/customers/unforget", {"device_id": "d-1"}),
    ("/api/v1/customers", {"uuid": "no-such-profile"}),
])
def test_any_one_identifier_satisfies_the_rule(strict, path, body):
    # Answers vary (404 for an unknown uuid); what matters is that the contract found nothing.
    response = strict.post(path, json=body)
    assert "X-Fakeshift-Violation" not in response.headers, response.json


def test_an_unknown_field_beside_an_identifier_is_the_only_problem(strict):
    response = strict.post("/api/v1/customers/forget", json={"email": "a@example.com", "x": 1})
    assert response.json == {"errors": {"body.x": [
        "is not a recognised field (rule: additionalProperties)"]}}


def test_the_document_marks_what_blueshift_sets_as_read_only():
    # uuid is reserved too, but a request may give it: it names the profile to update.
    assert READ_ONLY == sorted(RESERVED_FIELDS - {"uuid"})


@pytest.mark.parametrize("field", READ_ONLY)
@pytest.mark.parametrize("value", ["2030-01-01T00:00:00Z", True, 5])
def test_a_read_only_field_is_refused_whatever_its_value(strict, field, value):
    refusal = {"errors": {f"body.{field}": [
        "is set by Blueshift and cannot be written (rule: not)"]}}
    single = strict.post("/api/v1/customers", json={"email": "a@example.com", field: value})
    assert (single.status_code, single.json) == (400, refusal)
    bulk = strict.post("/api/v1/customers/bulk", json={"customers": [{field: value}]})
    assert bulk.json == {"errors": {f"body.customers[0].{field}": [
        "is set by Blueshift and cannot be written (rule: not)"]}}


@pytest.mark.parametrize("flag, problems", [
    (True, None), ("False", None),
    # The emulator reads null as a flag left out; the document says so.
    (None, None),
    ("maybe", {"body.delete_all_matching_customers": [
        "must be true or false (a JSON boolean, or that text in any case), or null "
        "(rule: pattern)"]}),
    (1, {"body.delete_all_matching_customers": [
        "must be a boolean or string or null, not a number (rule: type)"]}),
])
def test_the_delete_flag_in_the_body(strict, flag, problems):
    strict.seed(profiles=[{"email": "a@example.com"}])
    response = strict.post("/api/v1/customers/delete",
                           json={"email": "a@example.com", "delete_all_matching_customers": flag})
    if problems is None:
        assert response.status_code == 200, response.json
    else:
        assert (response.status_code, response.json) == (400, {"errors": problems})
