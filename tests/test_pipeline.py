"""The request pipeline (fakeshift/pipeline.py): the one path every request takes, its routes
built at start-up, and what it remembers between requests kept bounded."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

from fakeshift import create_app
from fakeshift.auth import RESOLVED_KEPT
from fakeshift.pipeline import Pipeline

from conftest import basic


def test_every_request_takes_the_pipeline_and_no_flask_hook():
    app = create_app()
    assert isinstance(app.wsgi_app, Pipeline)
    assert not any(app.before_request_funcs.values())
    assert not any(app.after_request_funcs.values())


def test_each_blueshift_rule_and_method_has_a_route_with_its_contract():
    app = create_app()
    routes = app.wsgi_app.routes
    blueshift_rules = [rule for rule in app.url_map.iter_rules()
                       if rule.endpoint.startswith("blueshift.")]
    assert len(routes) == sum(len(rule.methods) for rule in blueshift_rules)
    forget = routes[("/api/v1/customers/forget", "POST")]
    assert forget.endpoint == "blueshift.forget"
    assert forget.operation.operation_id and forget.writes
    search = routes[("/api/v1/customers", "GET")]
    assert search.operation is not None and not search.writes
    # No control-plane route is a Blueshift operation.
    assert not any(path.startswith("/_fakeshift/") for path, _method in routes)


def test_the_journal_keeps_the_body_a_malformed_fault_sent(client, api):
    client.post("/_fakeshift/faults", json={"operation": "search_customers", "malformed": True})
    sent = api.get("/api/v1/customers?email=someone@example.com").get_data()
    (entry,) = [e for e in client.get("/_fakeshift/journal.har",
                                      query_string={"redact": "false"}).json["log"]["entries"]
                if "/api/v1/customers" in e["request"]["url"]]
    assert entry["response"]["content"]["text"].encode() == sent


def test_resolved_keys_are_remembered_within_their_bound():
    app = create_app()
    keyring = app.extensions["fakeshift"].keyring
    client = app.test_client()

    def search(number: int) -> int:
        return client.get("/api/v1/customers?email=a@example.com",
                          headers=basic(f"key-{number}")).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = set(pool.map(search, range(RESOLVED_KEPT + 500)))
    assert statuses <= {200, 404}
    remembered = keyring._resolve_remembered.cache_info()
    assert remembered.currsize == RESOLVED_KEPT
    # A header longer than any valid one is resolved (and refused) without being kept.
    long_header = "Basic " + base64.b64encode(b"k" * 5000 + b":").decode()
    assert keyring.resolve(long_header) is None
    assert keyring._resolve_remembered.cache_info().misses == remembered.misses
