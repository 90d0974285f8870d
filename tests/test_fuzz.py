"""Bad input, generated: every malformed request gets a 4xx with a JSON body (never a 5xx) and
changes nothing.

Hypothesis builds the requests in-process (Flask test client, fast) across every route of the
url_map, Blueshift's and the control plane's, so routes added later are fuzzed too. A raw-socket
sample over a real server covers what only a real server sees (malformed HTTP, oversized headers),
and tests/fuzz_corpus.json keeps the nastiest cases, each of which once found a bug or guards a
decision, as a regression test on both paths.

Longer run: FAKESHIFT_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import string
import uuid
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import basic
from fakeshift import create_app
from fakeshift.contract import _inline_refs, load_document
from fakeshift.samples import sample

KEY = "fuzz"
AUTH = basic(KEY)
CORPUS = json.loads((Path(__file__).parent / "fuzz_corpus.json").read_text())
EXAMPLES = int(os.environ.get("FAKESHIFT_FUZZ_EXAMPLES", "600"))
SEEDED_LIST = 1001
SEEDED_GROUP = "vip"
SEED = {
    "profiles": [{"email": "a@example.com", "count": 3},
                 {"customer_id": "c-1", "email": "b@example.com", "cookie": "ck", "device_id": "d"}],
    "suppressed": [{"email": "gone@example.com"}],
    "lists": [{"id": SEEDED_LIST, "name": "Seeded", "members": ["a@example.com"]}],
    "groups": [{"group_id": SEEDED_GROUP, "members": [{"email": "b@example.com"}]}],
}
# Content types the server must refuse for a JSON body. text/plain and YAML are left out: the
# fault and scenario routes accept those on purpose.
WRONG_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
               "application/xml", "text/html", "image/png", "application/octet-stream",
               "application/jsonx", "json", "application/json-patch"]
OVERSIZED_BODY = b'{"email": "' + b"a" * (1 << 20) + b'"}'


# ---- the app under test and its observable state -------------------------------------------

def _fuzz_app(config: dict | None = None):
    app = create_app(config or {})
    client = app.test_client()
    assert client.post(f"/_fakeshift/accounts/{KEY}/seed", json=SEED).status_code == 200
    # A frozen clock makes every timestamp in the state stable, so before == after is exact.
    assert client.post("/_fakeshift/clock/freeze", json={}).status_code == 200
    return app, client


def _observable_state(client) -> dict:
    state = {path: client.get(path).json for path in (
        f"/_fakeshift/accounts/{KEY}", "/_fakeshift/accounts", "/_fakeshift/settings",
        "/_fakeshift/clock", "/_fakeshift/scenario", "/_fakeshift/faults",
        "/_fakeshift/rate-limits")}
    # A frozen clock's distance from real time grows by itself; its moment must not move.
    del state["/_fakeshift/clock"]["offset_seconds"]
    return state


def _sample_value(name: str, converter) -> object:
    kind = type(converter).__name__
    if kind == "IntegerConverter":
        return SEEDED_LIST
    if kind == "UUIDConverter":
        return uuid.UUID(int=1)
    if kind == "AnyConverter":
        return sorted(converter.items)[0]
    return KEY if name == "name" else SEEDED_GROUP


def _routes(prefix: str | tuple[str, ...], methods: set[str]) -> list[tuple[str, str]]:
    """(method, path) for every rule under `prefix`, parameters filled with seeded ids."""
    app = create_app({})
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix):
            continue
        values = {name: _sample_value(name, conv) for name, conv in rule._converters.items()}
        with app.test_request_context():
            path = app.url_for(rule.endpoint, **values)
        found.extend((method, path) for method in sorted(rule.methods & methods))
    return found


BLUESHIFT_PATHS = ("/api/", "/live")
BLUESHIFT_WRITES = _routes(BLUESHIFT_PATHS, {"POST", "PUT", "PATCH"})
BLUESHIFT_ALL = _routes(BLUESHIFT_PATHS, {"GET", "POST", "PUT", "PATCH", "DELETE"})
CONTROL_WRITES = _routes("/_fakeshift/", {"POST", "PUT"})


def _document_bodies() -> dict[tuple[str, str], dict]:
    """(method, path as fuzzed) -> a valid body, for the operations answered from the document
    (fakeshift/surface.py): its own example, sampled; {} where it documents no body."""
    document = load_document("blueshift")
    templates = {}
    for template, item in document["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "x-fakeshift" in operation:
                content = operation.get("requestBody", {}).get("content", {})
                schema = content.get("application/json", {}).get("schema")
                pattern = re.sub(r"\\\{[^{}]+\\\}", "[^/]+", re.escape(template))
                templates[(method.upper(), pattern)] = (
                    sample(_inline_refs(schema, document)) if schema else {})
    return templates


DOCUMENT_BODIES = _document_bodies()


def _answered_from_document(method: str, path: str) -> dict | None:
    return next((body for (verb, pattern), body in DOCUMENT_BODIES.items()
                 if verb == method and re.fullmatch(pattern, path)), None)


# ---- strategies ----------------------------------------------------------------------------

def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _not_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return True
    return False


bad_values = st.one_of(
    st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none(),
    st.sampled_from(["", "   ", "\t\n"]),
    st.text(max_size=20).map(lambda text: text + "\x00"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["x", "y"]), st.integers(), max_size=2),
)
FIELD_NAMES = ["email", "customer_id", "cookie", "device_id", "identifier_key",
               "identifier_value", "name", "customers", "delete_all_matching_customers", "uuid"]
# Objects whose every field is wrong for every route: no route may accept one.
wrong_objects = st.dictionaries(st.sampled_from(FIELD_NAMES), bad_values, max_size=4).map(
    lambda body: json.dumps(body).encode())
unknown_field_objects = st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=8).map(lambda k: "zz_" + k),
    st.integers(), min_size=1, max_size=3).map(lambda body: json.dumps(body).encode())

syntax_errors = st.one_of(
    st.binary(min_size=1, max_size=200).filter(_not_json),
    st.text(min_size=1, max_size=200).map(str.encode).filter(_not_json),
    st.sampled_from([b"{", b"}", b'{"email": }', b'{"email": "a@example.com",}', b"{'email': 1}",
                     b'{"email": "a@example.com"} trailing', b"NaN", b"Infinity", b"\x00",
                     b'{"email": NaN}', b'{"email": "a@example.com"\x00}', b"\xef\xbb\xbf{}"]),
)
non_objects = st.one_of(
    st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=10), st.none(),
    st.booleans()).map(lambda value: json.dumps(value).encode())
duplicate_keys = st.sampled_from(FIELD_NAMES).map(
    lambda k: f'{{"{k}": "a@example.com", "{k}": "b@example.com"}}'.encode())
invalid_utf8 = st.tuples(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]),
                         st.sampled_from(FIELD_NAMES)).map(
    lambda parts: b'{"' + parts[1].encode() + b'": "a' + parts[0] + b'"}')
lone_surrogates = st.sampled_from(FIELD_NAMES + ["note"]).map(
    lambda k: f'{{"{k}": "x\\ud800y", "customer_id": "c-9"}}'.encode())
deep = st.tuples(st.integers(65, 5000), st.sampled_from(["array", "object"])).map(
    lambda spec: f'{{"customer_id": "c-9", "note": {_nested(*spec)}}}'.encode())
huge_numbers = st.sampled_from(["1e999", "-1e999", "1" * 5000, "-" + "9" * 4400]).map(
    lambda number: f'{{"customer_id": "c-9", "email": "n@example.com", "n": {number}}}'.encode())

malformed_bodies = st.one_of(syntax_errors, non_objects, duplicate_keys, invalid_utf8,
                             lone_surrogates, deep, huge_numbers, wrong_objects,
                             st.sampled_from([b"", b"   ", b"\r\n"]))
control_bodies = st.one_of(syntax_errors, non_objects, duplicate_keys, invalid_utf8,
                           lone_surrogates, deep, huge_numbers, unknown_field_objects)


def _request(method, path, body=b"", content_type="application/json", headers=None):
    return {"method": method, "path": path, "body": body,
            "headers": {**AUTH, "Content-Type": content_type, **(headers or {})}}


# A body that is no JSON object at all: every route refuses it. An object of wrong fields is
# refused by the emulated routes only: the rest of the API (surface.py) takes what its document
# allows, and many of its operations allow any object.
malformed_json = st.one_of(syntax_errors, non_objects, duplicate_keys, invalid_utf8,
                           lone_surrogates, deep, huge_numbers)
EMULATED_WRITES = [route for route in BLUESHIFT_WRITES if _answered_from_document(*route) is None]
DOCUMENT_WRITES = [route for route in BLUESHIFT_WRITES if _answered_from_document(*route) is not None]
blueshift_bad_body = st.one_of(
    st.builds(lambda route, body: _request(*route, body), st.sampled_from(EMULATED_WRITES),
              malformed_bodies),
    st.builds(lambda route, body: _request(*route, body), st.sampled_from(DOCUMENT_WRITES),
              malformed_json))
blueshift_wrong_type = st.builds(
    lambda route, content_type: _request(*route, b'{"email": "a@example.com"}', content_type),
    st.sampled_from(BLUESHIFT_WRITES), st.sampled_from(WRONG_TYPES))
blueshift_oversized = st.builds(lambda route: _request(*route, OVERSIZED_BODY),
                                st.sampled_from(BLUESHIFT_WRITES))
oversized_headers = st.builds(
    lambda route, size: _request(*route, b'{"email": "a@example.com"}',
                                 headers={"X-Fuzz-Padding": "p" * size}),
    st.sampled_from(BLUESHIFT_ALL + CONTROL_WRITES), st.integers(65 << 10, 200 << 10))

bad_keys = st.one_of(
    st.sampled_from(["", "Basic", "Basic ", "Bearer x", "basic", "Token abc", "Basic ===",
                     "Basic Og==", "Basic OnNlY3JldA=="]),
    st.binary(max_size=12).map(lambda raw: "Basic " + base64.b64encode(b"\xff" + raw).decode()),
    st.binary(max_size=12).map(lambda raw: "Basic " + base64.b64encode(b"\x00" + raw).decode()),
    st.integers(257, 2000).map(lambda n: "Basic " + base64.b64encode(b"k" * n).decode()),
    st.text(string.ascii_letters + "!@#$%^&*", min_size=1, max_size=30).map(
        lambda junk: "Basic " + junk + "!"),
    st.text(string.ascii_letters, min_size=1, max_size=10).filter(
        lambda scheme: scheme.lower() != "basic").map(lambda scheme: scheme + " a2V5Og=="),
)
VALID_BODIES = {
    "/api/v1/customers/forget": {"email": "a@example.com"},
    "/api/v1/customers/delete": {"email": "a@example.com"},
    "/api/v1/customers/unforget": {"email": "gone@example.com"},
    "/api/v1/customers": {"email": "new@example.com"},
    "/api/v1/customers/bulk": {"customers": [{"email": "new@example.com"}]},
    "/api/v1/custom_user_lists/create": {"name": "Fresh"},
    "/api/v1/customers/merge": {"customer_id": "c-1", "bsft_new_customer_id": "c-1"},
    f"/api/v1/custom_user_lists/bulk_add_users_to_list/{SEEDED_LIST}":
        {"identifier_key": "email", "identifier_values": ["a@example.com"]},
    f"/api/v1/custom_user_lists/bulk_remove_users_from_list/{SEEDED_LIST}":
        {"identifier_key": "email", "identifier_values": ["a@example.com"]},
    f"/api/v1/custom_user_lists/overwrite_list/{SEEDED_LIST}": {"s3_file_path": "s3://b/l.csv"},
    "/api/v1/event": {"event": "view"},
    "/api/v1/bulkevents": {"events": [{"event": "view"}]},
}
LIST_BODY = {"identifier_key": "email", "identifier_value": "a@example.com"}


def _valid_body(path: str, method: str = "POST") -> bytes:
    from_document = _answered_from_document(method, path)
    if from_document is not None:
        return json.dumps(from_document).encode()
    return json.dumps(VALID_BODIES.get(path, LIST_BODY)).encode()


bad_auth = st.builds(
    lambda route, header: {"method": route[0], "path": route[1],
                           "body": _valid_body(route[1], route[0]),
                           "headers": {"Content-Type": "application/json",
                                       **({"Authorization": header} if header else {})}},
    st.sampled_from(BLUESHIFT_ALL), bad_keys)

# Identifiers that are never the seeded ones, whatever the percent-decoding does to them.
odd_ids = st.one_of(
    st.sampled_from(["..", "%2e%2e", "..%2F..%2F_fakeshift%2Freset", "%2F", "%00", "a%00b",
                     "%252F", "%ff", "%c3%28", "-1", "1.5", "1e3", "0x10", "+1", " 1", "01001x",
                     "9" * 40, "1001%2F..", "%20", "__proto__", "$(reboot)"]),
    st.text(string.ascii_letters + string.digits + "-_.~", min_size=1, max_size=20),
    st.integers(257, 5000).map(lambda n: "x" * n),
).filter(lambda raw: unquote(raw) not in (SEEDED_GROUP, str(SEEDED_LIST), KEY))
path_templates = [
    ("GET", "/api/v1/custom_user_lists/id/{}"),
    ("PUT", "/api/v1/custom_user_lists/add_user_to_list/{}"),
    ("PUT", "/api/v1/custom_user_lists/remove_user_from_list/{}"),
    ("DELETE", "/api/v1/customer_group/{}"),
    ("DELETE", "/api/v1/customer_group/{}/user/" + str(uuid.UUID(int=2))),
    ("DELETE", "/api/v1/customer_group/" + SEEDED_GROUP + "/user/{}"),
    ("GET", "/api/v1/customers/{}"),
    ("GET", "/_fakeshift/accounts/{}"),
    ("DELETE", "/_fakeshift/faults/{}"),
    ("POST", "/api/v1/customers/{}"),
    ("GET", "/api/v1/{}/customers"),
    ("GET", "/{}/api/v1/customers"),
]
path_tricks = st.builds(
    lambda template, odd: _request(template[0], template[1].format(odd), _valid_body("")),
    st.sampled_from(path_templates), odd_ids)
bad_queries = st.one_of(
    st.builds(lambda junk: _request("POST", "/api/v1/customers/delete?delete_all_matching_customers="
                                    + quote(junk), b'{"email": "a@example.com"}'),
              st.text(max_size=10).filter(lambda v: v.lower() not in ("true", "false", ""))),
    st.builds(lambda junk: _request("DELETE", f"/api/v1/customer_group/{SEEDED_GROUP}?delete_users="
                                    + quote(junk)),
              st.text(min_size=1, max_size=10).filter(lambda v: v.lower() not in ("true", "false"))),
    st.builds(lambda name, value: _request("GET", f"/api/v1/customers?{quote(name)}={quote(value)}"),
              st.text(min_size=1, max_size=8).filter(lambda n: n != "email"), st.text(max_size=8)),
    st.just(_request("GET", "/api/v1/customers?email=")),
    st.just(_request("GET", "/api/v1/customers?email=a%00b")),
)
control_bad_body = st.builds(lambda route, body: {**_request(*route, body), "headers": {
    "Content-Type": "application/json"}}, st.sampled_from(CONTROL_WRITES), control_bodies)
control_wrong_type = st.builds(lambda route, content_type: {**_request(*route, b'{"to": "empty"}'),
                                                              "headers": {"Content-Type": content_type}},
                               st.sampled_from(CONTROL_WRITES), st.sampled_from(WRONG_TYPES))

malformed_requests = st.one_of(blueshift_bad_body, blueshift_wrong_type, blueshift_oversized,
                               oversized_headers, bad_auth, path_tricks, bad_queries,
                               control_bad_body, control_wrong_type)


# ---- the checks ----------------------------------------------------------------------------

def _send(client, case):
    return client.open(case["path"], method=case["method"], data=case["body"],
                       headers=case["headers"])


def _assert_refused(response, case, status=None):
    where = (case["method"], case["path"][:120], case["body"][:120], response.status_code)
    assert 400 <= response.status_code < 500, where
    assert status is None or response.status_code == status, (where, status)
    assert response.mimetype == "application/json", where
    assert isinstance(json.loads(response.get_data()), dict), where


def test_the_routes_under_fuzz_cover_every_endpoint():
    endpoints = {rule.endpoint for rule in create_app({}).url_map.iter_rules()
                 if rule.endpoint.startswith("blueshift.")}
    assert len(BLUESHIFT_ALL) >= len(endpoints) >= 13
    assert len(BLUESHIFT_WRITES) >= 8 and len(CONTROL_WRITES) >= 10


def test_the_valid_bodies_really_are_valid():
    """So the auth cases prove that auth, and nothing else, refused them. An update answered
    from the document names an object the fuzzed path does not hold: its 404 is the domain's."""
    for method, path in BLUESHIFT_WRITES:
        _app, client = _fuzz_app()
        response = client.open(path, method=method, data=_valid_body(path, method), headers={
            **AUTH, "Content-Type": "application/json"})
        expected = {200, 404} if _answered_from_document(method, path) is not None else {200}
        assert response.status_code in expected, (path, response.json)
        assert response.json != {"status": "404", "error": "Not Found"}, path


def test_generated_malformed_requests_are_refused_and_change_nothing():
    app, client = _fuzz_app()
    emulator = app.extensions["fakeshift"]
    before = _observable_state(client)
    sent = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=malformed_requests)
    def refused(case):
        response = _send(client, case)
        sent.append(response.status_code)
        _assert_refused(response, case)
        assert emulator.internal_errors == 0
        assert _observable_state(client) == before, (case["method"], case["path"][:120],
                                                     case["body"][:120])

    refused()
    assert len(sent) >= min(EXAMPLES, 500)
    # The corpus really spans the kinds of refusal, not just one.
    assert {400, 401, 404, 413, 431} <= set(sent), sorted(set(sent))


@pytest.mark.parametrize("case", CORPUS["in_process"], ids=lambda case: case["why"][:60])
def test_corpus_in_process(case):
    app, client = _fuzz_app(case.get("config"))
    before = _observable_state(client)
    request = _corpus_request(case)
    response = _send(client, request)
    _assert_refused(response, request, case["status"])
    assert app.extensions["fakeshift"].internal_errors == 0
    assert _observable_state(client) == before


def _corpus_request(case) -> dict:
    if "body_hex" in case:
        body = bytes.fromhex(case["body_hex"])
    else:
        body = _expand(case.get("body", "")).encode("utf-8")
    headers = {"Content-Type": "application/json", **case.get("headers", {})}
    if case.get("auth", True):
        headers = {**AUTH, **headers}
    return {"method": case["method"], "path": _expand(case["path"]), "body": body,
            "headers": {name: _expand(value) for name, value in headers.items()}}


def _expand(text: str) -> str:
    """`{repeat:N:X}` in a corpus string stands for X repeated N times (keeps the file small)."""
    return re.sub(r"\{repeat:(\d+):([^}]*)\}", lambda m: m.group(2) * int(m.group(1)), text)


# ---- over a real server: what only a real server sees ----------------------------------------

def _exchange(url: str, data: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes; return the status, headers and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        try:
            connection.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading all of an oversized request
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
    return status, headers, body


@pytest.fixture(scope="module")
def raw_server():
    from conftest import ServerProcess

    server = ServerProcess("--access-log", "false")
    server.wait_ready()
    assert requests.post(f"{server.url}/_fakeshift/accounts/{KEY}/seed", json=SEED,
                         timeout=10).status_code == 200
    requests.post(f"{server.url}/_fakeshift/clock/freeze", json={}, timeout=10)
    yield server
    server.stop()
    assert "Traceback" not in server.output


def _server_state(server) -> dict:
    state = {path: requests.get(f"{server.url}{path}", timeout=10).json()
             for path in (f"/_fakeshift/accounts/{KEY}", "/_fakeshift/accounts", "/_fakeshift/clock")}
    del state["/_fakeshift/clock"]["offset_seconds"]
    return state


def _assert_raw_refused(server, data: bytes, status=None):
    got, headers, body = _exchange(server.url, data)
    assert 400 <= got < 500, (data[:150], got, body[:200])
    assert status is None or got == status, (data[:150], got, status, body[:200])
    assert headers.get("content-type", "").startswith("application/json"), (data[:150], headers)
    assert isinstance(json.loads(body), dict)


@pytest.mark.parametrize("case", CORPUS["raw"], ids=lambda case: case["why"][:60])
def test_corpus_over_a_real_socket(raw_server, case):
    before = _server_state(raw_server)
    data = _expand(case["raw"]).replace("{auth}", AUTH["Authorization"]).encode("latin-1")
    _assert_raw_refused(raw_server, data, case["status"])
    assert _server_state(raw_server) == before
    assert requests.get(f"{raw_server.url}/_fakeshift/health",
                        timeout=10).json()["internal_errors"] == 0


header_names = st.text(string.ascii_letters + string.digits + "-_!#$%&'*+.^`|~", min_size=1,
                       max_size=20)
# Any bytes but CR and LF, which would end the header line.
header_values = st.binary(max_size=60).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=int(os.environ.get("FAKESHIFT_FUZZ_RAW_EXAMPLES", "40")), deadline=None,
          database=None, suppress_health_check=list(HealthCheck))
@given(junk=st.lists(st.tuples(header_names, header_values), min_size=1, max_size=8),
       body=st.one_of(syntax_errors, invalid_utf8, duplicate_keys, wrong_objects))
def test_raw_requests_with_junk_headers_are_refused_as_json(raw_server, junk, body):
    lines = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in junk)
    data = (b"POST /api/v1/customers/forget HTTP/1.1\r\nHost: fakeshift\r\n"
            + f"Authorization: {AUTH['Authorization']}\r\n".encode()
            + b"Content-Type: application/json\r\nConnection: close\r\n" + lines
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    before = _server_state(raw_server)
    _assert_raw_refused(raw_server, data)
    assert _server_state(raw_server) == before
