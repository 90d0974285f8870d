"""The stub the peers serve: one entry per workload operation, written once and rendered as
WireMock mappings and as a Mockoon environment, so both answer the same requests the same way.

Each stub matches what a hand-written test double for these calls would: the method, the path
(ids as a pattern), the query parameter that makes a delete a delete-all, HTTP Basic credentials,
and the JSON field that names the target. It answers with the JSON Blueshift (and fakeshift)
answers. It keeps no state: every matching request gets the same answer, which is all a stub
can do, and why the peers' figures are a ceiling for a stateless double rather than an
emulator's.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .workloads import LIST_ID, OPERATIONS, build_request

OK = {"status": "ok"}
# Fixed values where fakeshift would answer with the time or a fresh uuid.
WHEN = "2026-01-01T00:00:00.000000Z"
CUSTOMER = {"firstname": "Bench", "customer_id": "new0", "email": "new0@bench.test",
            "uuid": "b131b6b1-4e64-4670-89c3-a2300e8bb913", "created_at": WHEN,
            "updated_at": WHEN}
GROUP = {"account_uuid": "ed58e9ec-7529-453a-a99f-822538d1e3aa", "created_at": WHEN,
         "extended_attributes": {"name": "bench 0"}, "group_id": "grp0", "updated_at": WHEN,
         "user_count": 1, "user_uuids": ["2b94ae22-fd61-4ca6-8742-ae396181aee2"],
         "uuid": "4a745fe3-5831-428c-90c3-b2569830beb4", "version": "1", "name": "bench 0"}
# The credentials every stub asks for (any key: the plans use a fresh one per run).
AUTHORIZATION_PATTERN = "^Basic .+"


@dataclass(frozen=True)
class Stub:
    operation: str
    method: str
    # "/api/v1/customer_group/{group_id}": a {name} segment matches any one segment.
    path: str
    answer: dict
    body_field: str | None = None  # a field the JSON body must have
    query: dict[str, str] = field(default_factory=dict)  # query parameters that must equal


STUBS = (
    Stub("identify", "POST", "/api/v1/customers", {"customer": CUSTOMER}, "email"),
    Stub("forget", "POST", "/api/v1/customers/forget",
         {"status": "ok", "customer": {"is_forgotten": True, "forgotten_at": WHEN}}, "email"),
    Stub("unforget", "POST", "/api/v1/customers/unforget", OK, "email"),
    # Before delete: a delete-all carries an email, not a customer_id, on the same path.
    Stub("delete_all", "POST", "/api/v1/customers/delete", OK, "email",
         {"delete_all_matching_customers": "true"}),
    Stub("delete", "POST", "/api/v1/customers/delete", OK, "customer_id"),
    Stub("list_remove", "PUT", "/api/v1/custom_user_lists/remove_user_from_list/{list_id}", OK,
         "identifier_value"),
    Stub("group_delete", "DELETE", "/api/v1/customer_group/{group_id}",
         {"group": GROUP, "_bsft_delete_status": "success"}),
)
assert {stub.operation for stub in STUBS} == set(OPERATIONS), "a workload has no stub"
assert build_request("list_remove", 0)[1].endswith(f"/{LIST_ID}")

_PARAMETER = re.compile(r"\{[^/}]+\}")


def _path_regex(path: str) -> str:
    """"/a/{id}/b" -> "/a/[^/]+/b"."""
    return "[^/]+".join(re.escape(part) for part in _PARAMETER.split(path))


# ---- WireMock -------------------------------------------------------------------------------

def wiremock_mappings() -> list[dict]:
    """One stub mapping per operation, as WireMock's JSON mapping files hold them."""
    mappings = []
    for stub in STUBS:
        request: dict = {"method": stub.method}
        if _PARAMETER.search(stub.path):
            request["urlPathPattern"] = _path_regex(stub.path)
        else:
            request["urlPath"] = stub.path
        if stub.query:
            request["queryParameters"] = {name: {"equalTo": value}
                                          for name, value in stub.query.items()}
        request["headers"] = {"Authorization": {"matches": AUTHORIZATION_PATTERN}}
        if stub.body_field:
            request["bodyPatterns"] = [{"matchesJsonPath": f"$.{stub.body_field}"}]
        mappings.append({
            "name": stub.operation,
            # The more specific stub first (WireMock: lower number, higher priority).
            "priority": 1 if stub.query else 5,
            "request": request,
            "response": {"status": 200, "headers": {"Content-Type": "application/json"},
                         "jsonBody": stub.answer},
        })
    return mappings


def write_wiremock_root(root: Path) -> Path:
    """A WireMock root directory (mappings/ and __files/) holding the stubs."""
    mappings = root / "mappings"
    mappings.mkdir(parents=True, exist_ok=True)
    (root / "__files").mkdir(exist_ok=True)
    for old in mappings.glob("*.json"):
        old.unlink()
    for mapping in wiremock_mappings():
        (mappings / f"{mapping['name']}.json").write_text(json.dumps(mapping, indent=2))
    return root


# ---- Mockoon --------------------------------------------------------------------------------

MOCKOON_MIGRATION = 33  # the data format of @mockoon/cli 9; newer CLIs migrate it (--repair)


def _mockoon_response(label: str, status: int, body: dict, rules: list[dict],
                      default: bool = False) -> dict:
    return {
        "uuid": str(uuid.uuid4()), "body": json.dumps(body), "latency": 0, "statusCode": status,
        "label": label, "headers": [{"key": "Content-Type", "value": "application/json"}],
        "bodyType": "INLINE", "filePath": "", "databucketID": "", "sendFileAsBody": False,
        "rules": rules, "rulesOperator": "AND", "disableTemplating": False,
        "fallbackTo404": False, "default": default, "crudKey": "id", "callbacks": [],
    }


def _rule(target: str, modifier: str, value: str, operator: str, invert: bool = False) -> dict:
    return {"target": target, "modifier": modifier, "value": value, "invert": invert,
            "operator": operator}


def mockoon_environment(port: int) -> dict:
    """A Mockoon environment with one route per method and path; a route's responses carry
    rules (credentials, query, body field), the first whose rules all hold answers, and a 400
    answers when none does. Every other setting is Mockoon's default for a new environment."""
    routes: dict[tuple[str, str], dict] = {}
    for stub in STUBS:
        endpoint = _PARAMETER.sub(lambda m: ":" + m.group(0)[1:-1], stub.path).lstrip("/")
        route = routes.setdefault((stub.method, endpoint), {
            "uuid": str(uuid.uuid4()), "type": "http", "documentation": stub.operation,
            "method": stub.method.lower(), "endpoint": endpoint, "responses": [],
            "responseMode": None, "streamingMode": None, "streamingInterval": 0,
        })
        rules = [_rule("header", "Authorization", AUTHORIZATION_PATTERN, "regex")]
        rules += [_rule("query", name, value, "equals") for name, value in stub.query.items()]
        if stub.body_field:
            rules.append(_rule("body", stub.body_field, "", "null", invert=True))
        route["responses"].append(_mockoon_response(stub.operation, 200, stub.answer, rules))
    for route in routes.values():
        route["responses"].append(_mockoon_response(
            "no stub matched", 400, {"errors": {"request": ["no stub matched"]}}, [],
            default=True))
    route_list = list(routes.values())
    return {
        "uuid": str(uuid.uuid4()), "lastMigration": MOCKOON_MIGRATION, "name": "fakeshift bench",
        "endpointPrefix": "", "latency": 0, "port": port, "hostname": "127.0.0.1",
        "folders": [], "routes": route_list,
        "rootChildren": [{"type": "route", "uuid": route["uuid"]} for route in route_list],
        "proxyMode": False, "proxyHost": "", "proxyRemovePrefix": False,
        "tlsOptions": {"enabled": False, "type": "CERT", "pfxPath": "", "certPath": "",
                       "keyPath": "", "caPath": "", "passphrase": ""},
        "cors": True, "headers": [], "proxyReqHeaders": [], "proxyResHeaders": [], "data": [],
        "callbacks": [],
    }


def write_mockoon_environment(path: Path, port: int) -> Path:
    path.write_text(json.dumps(mockoon_environment(port), indent=2))
    return path
