"""Magic inputs: an unmodified client triggers faults by the identifier it uses, with no header
and no control-plane call."""

from __future__ import annotations

import time

import pytest
from waitress.channel import ClientDisconnected

from fakeshift import create_app
from fakeshift.config import Config
from fakeshift.errors import STATUS_BODIES
from fakeshift.magic import directive

from conftest import Blueshift

DOMAIN = "fail.fakeshift.test"


def forget(api, email):
    return api.post("/api/v1/customers/forget", json={"email": email})


@pytest.mark.parametrize("status", [400, 404, 409, 422, 500, 502, 503, 504])
def test_an_email_at_the_magic_domain_answers_its_status_with_blueshifts_body(api, status):
    response = forget(api, f"{status}@{DOMAIN}")
    assert response.status_code == status
    assert response.json == STATUS_BODIES[status]
    assert response.headers["X-Fakeshift-Fault"] == "magic"


def test_the_domain_is_read_in_any_case(api):
    assert forget(api, "503@FAIL.Fakeshift.TEST").status_code == 503


def test_429_comes_with_or_without_retry_after(api):
    plain = forget(api, f"429@{DOMAIN}")
    assert plain.status_code == 429 and "Retry-After" not in plain.headers
    waiting = forget(api, f"429-retry-30@{DOMAIN}")
    assert waiting.status_code == 429 and waiting.headers["Retry-After"] == "30"


def test_latency_slows_the_call_then_it_succeeds(api):
    started = time.monotonic()
    response = forget(api, f"latency-300ms@{DOMAIN}")
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200


def test_drop_cuts_the_connection(api):
    with pytest.raises(ClientDisconnected):
        forget(api, f"drop@{DOMAIN}")


def test_first_n_fail_then_succeed_counted_per_identifier(api):
    first = [forget(api, f"first-2-503+a@{DOMAIN}").status_code for _ in range(3)]
    other = [forget(api, f"first-2-503+b@{DOMAIN}").status_code for _ in range(3)]
    assert first == other == [503, 503, 200]


def test_a_customer_id_prefix_works_on_search_and_in_bulk_calls(api):
    assert api.get("/api/v1/customers?customer_id=fakeshift-fail-503").status_code == 503
    bulk = api.post("/api/v1/customers/bulk", json={"customers": [
        {"customer_id": "ordinary"}, {"customer_id": "fakeshift-fail-first-1-502"}]})
    assert bulk.status_code == 502
    assert api.post("/api/v1/customers/bulk", json={"customers": [
        {"customer_id": "ordinary"}, {"customer_id": "fakeshift-fail-first-1-502"}]}
    ).status_code == 200


def test_a_failed_call_changes_nothing(api):
    api.post("/api/v1/customers", json={"email": "kept@example.com"})
    api.post("/api/v1/customers", json={"email": f"503@{DOMAIN}"})
    assert [p["email"] for p in api.state()["profiles"]] == ["kept@example.com"]


def test_magic_inputs_are_journaled_as_faults(client, api):
    forget(api, f"503@{DOMAIN}")
    entries = client.get("/_fakeshift/journal", query_string={"fault": "magic"}).json["entries"]
    assert [(e["status"], e["operation"]) for e in entries] == [(503, "blueshift.forget")]


def test_the_reserved_domain_with_no_fault_named_is_a_400(api):
    response = forget(api, f"hello@{DOMAIN}")
    assert response.status_code == 400
    assert "names no fault" in response.json["errors"]["identifier"][0]


def test_ordinary_identifiers_are_untouched(api):
    assert forget(api, "503@example.com").status_code == 200
    assert forget(api, "fakeshift-fail@example.com").status_code == 200
    assert directive("customer-fakeshift-fail-503") is None


def test_magic_inputs_can_be_turned_off():
    app = create_app(Config(magic_inputs=False))
    api = Blueshift(app.test_client())
    assert forget(api, f"503@{DOMAIN}").status_code == 200


@pytest.mark.parametrize("identifier,spec", [
    (f"503@{DOMAIN}", "status=503"),
    (f"429-retry-7+x@{DOMAIN.upper()}", "status=429,retry_after=7"),
    (f"first-3-latency-2s@{DOMAIN}", "latency=2s,first=3"),
    ("fakeshift-fail-first-1-drop", "drop,first=1"),
])
def test_the_directive_grammar(identifier, spec):
    assert directive(identifier) == spec
