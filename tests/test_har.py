"""The journal as HAR 1.2 (`GET /_fakeshift/journal.har`): valid against the format, faithful to
the journal and to what clients were answered, bounded, credentials redacted; and
`fakeshift journal --har FILE`, which saves it from a running server."""

from __future__ import annotations

import argparse
import base64
import json
import socket
from urllib.parse import quote, quote_plus

import jsonschema
import pytest
import requests
from waitress.channel import ClientDisconnected

from fakeshift import create_app, journal_command
from fakeshift.clock import VirtualClock
from fakeshift.journal import STORED_HEADER_CHARACTERS, Journal

from conftest import Blueshift, basic, recording_microseconds

SEARCH = "/api/v1/customers?email=someone@example.com"


def _object(required: list[str], properties: dict) -> dict:
    """An object with HAR's required fields, its optional ones, and custom fields only with the
    leading underscore the format asks for."""
    return {"type": "object", "required": required, "properties": properties,
            "patternProperties": {"^_": {}}, "additionalProperties": False}


# HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), written down as JSON Schema: what is
# required, the types, and "comment" wherever the format allows one. No well-kept validator for
# HAR is on PyPI (harfile, installed with schemathesis, only writes HAR files).
_NAME_VALUE = _object(["name", "value"], {"name": {"type": "string"},
                                          "value": {"type": "string"},
                                          "comment": {"type": "string"}})
_COOKIE = _object(["name", "value"], {
    "name": {"type": "string"}, "value": {"type": "string"}, "path": {"type": "string"},
    "domain": {"type": "string"}, "expires": {"type": "string"}, "httpOnly": {"type": "boolean"},
    "secure": {"type": "boolean"}, "comment": {"type": "string"}})
_ISO_8601 = {"type": "string",
             "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"}
_SIZE = {"type": "integer", "minimum": -1}
# An absolute http URL of RFC 3986's characters (jsonschema checks "format": "uri" only with an
# extra package): pchar in the path, pchar, "/" and "?" in the query.
_PCHAR = r"A-Za-z0-9\-._~!$&'()*+,;=:@%"
_URL = {"type": "string",
        "pattern": rf"^http://[A-Za-z0-9.\-]+(:[0-9]+)?(/[{_PCHAR}/]*)?(\?[{_PCHAR}/?]*)?$"}
HAR_1_2 = _object(["log"], {"log": _object(["version", "creator", "entries"], {
    "version": {"const": "1.2"},
    "creator": _object(["name", "version"], {"name": {"type": "string"},
                                             "version": {"type": "string"},
                                             "comment": {"type": "string"}}),
    "browser": {"type": "object"}, "pages": {"type": "array"}, "comment": {"type": "string"},
    "entries": {"type": "array", "items": _object(
        ["startedDateTime", "time", "request", "response", "cache", "timings"], {
            "pageref": {"type": "string"}, "startedDateTime": _ISO_8601,
            "time": {"type": "number", "minimum": 0},
            "request": _object(
                ["method", "url", "httpVersion", "cookies", "headers", "queryString",
                 "headersSize", "bodySize"], {
                    "method": {"type": "string"}, "url": _URL,
                    "httpVersion": {"type": "string"},
                    "cookies": {"type": "array", "items": _COOKIE},
                    "headers": {"type": "array", "items": _NAME_VALUE},
                    "queryString": {"type": "array", "items": _NAME_VALUE},
                    "postData": _object(["mimeType"], {
                        "mimeType": {"type": "string"}, "text": {"type": "string"},
                        "params": {"type": "array"}, "comment": {"type": "string"}}),
                    "headersSize": _SIZE, "bodySize": _SIZE, "comment": {"type": "string"}}),
            "response": _object(
                ["status", "statusText", "httpVersion", "cookies", "headers", "content",
                 "redirectURL", "headersSize", "bodySize"], {
                    "status": {"type": "integer"}, "statusText": {"type": "string"},
                    "httpVersion": {"type": "string"},
                    "cookies": {"type": "array", "items": _COOKIE},
                    "headers": {"type": "array", "items": _NAME_VALUE},
                    "content": _object(["size", "mimeType"], {
                        "size": {"type": "integer", "minimum": 0},
                        "compression": {"type": "integer"}, "mimeType": {"type": "string"},
                        "text": {"type": "string"}, "encoding": {"type": "string"},
                        "comment": {"type": "string"}}),
                    "redirectURL": {"type": "string"}, "headersSize": _SIZE, "bodySize": _SIZE,
                    "comment": {"type": "string"}}),
            "cache": {"type": "object"},
            "timings": _object(["send", "wait", "receive"], {
                **{name: {"type": "number", "minimum": -1}
                   for name in ("blocked", "dns", "connect", "ssl")},
                **{name: {"type": "number", "minimum": 0} for name in ("send", "wait", "receive")},
                "comment": {"type": "string"}}),
            "serverIPAddress": {"type": "string"}, "connection": {"type": "string"},
            "comment": {"type": "string"}})}})})


def valid_har(document: dict) -> dict:
    jsonschema.Draft202012Validator(
        HAR_1_2, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(document)
    for entry in document["log"]["entries"]:
        # The format asks that an entry's time be the sum of its timings (-1: not applicable).
        assert entry["time"] == pytest.approx(sum(t for t in entry["timings"].values() if t > 0))
    return document


def har(client, headers: dict | None = None, **filters) -> dict:
    response = client.get("/_fakeshift/journal.har", query_string=filters, headers=headers or {})
    assert response.status_code == 200, response.json
    assert response.mimetype == "application/json"
    return valid_har(response.json)


def header(headers: list[dict], name: str) -> str | None:
    return next((h["value"] for h in headers if h["name"].lower() == name.lower()), None)


def test_the_schema_refuses_what_is_not_har():
    # The validation below must be able to fail: a HAR missing a required field, a custom field
    # without its underscore, an entry whose time is not the sum of its timings.
    document = har(create_app({}).test_client())
    good = {**document["log"], "entries": [{
        "startedDateTime": "2030-01-01T00:00:00.000000Z", "time": 1.5,
        "request": {"method": "GET", "url": "http://127.0.0.1/", "httpVersion": "HTTP/1.1",
                    "cookies": [], "headers": [], "queryString": [], "headersSize": -1,
                    "bodySize": 0},
        "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                     "cookies": [], "headers": [], "content": {"size": 0, "mimeType": ""},
                     "redirectURL": "", "headersSize": -1, "bodySize": 0},
        "cache": {}, "timings": {"send": 0, "wait": 1.5, "receive": 0}}]}
    valid_har({"log": good})
    entry = good["entries"][0]
    request = entry["request"]
    for broken in ({**entry, "cache": None}, {**entry, "account": "x"},
                   {**entry, "request": {**request, "url": "http://127.0.0.1/a b"}},
                   {**entry, "request": {**request, "url": "/relative"}},
                   {**entry, "startedDateTime": "yesterday"}, {**entry, "time": 2.5},
                   {**entry, "response": {**entry["response"], "content": {"size": 0}}}):
        with pytest.raises((jsonschema.ValidationError, AssertionError)):
            valid_har({"log": {**good, "entries": [broken]}})


def test_every_journal_entry_is_a_har_entry_with_what_the_client_sent_and_got(client, api):
    seed = client.post("/_fakeshift/accounts/test-key/seed",
                       json={"profiles": [{"email": "someone@example.com", "count": 2}]})
    search = api.get(SEARCH, headers={"X-Request-Id": "req-17", "User-Agent": "shop-sync/2.1"})
    delete = api.post("/api/v1/customers/delete?delete_all_matching_customers=true",
                      json={"email": "someone@example.com"})
    missing = api.get("/api/v1/custom_user_lists/id/3")
    with pytest.raises(ClientDisconnected):
        api.get(SEARCH, headers={"X-Fakeshift-Fault": "drop"})

    # The people unmasked, to compare with what was sent (masking has a test of its own).
    document = har(client, redact="false")
    assert document["log"]["creator"]["name"] == "fakeshift"
    entries = document["log"]["entries"]
    journaled = client.get("/_fakeshift/journal").json["entries"]
    assert [(e["request"]["method"], e["request"]["url"], e["response"]["status"] or None)
            for e in entries] == [
        (j["method"], "http://localhost" + j["path"] + (f"?{j['query']}" if j["query"] else ""),
         j["status"]) for j in journaled]
    assert [e["_fakeshift"]["id"] for e in entries] == [j["id"] for j in journaled]

    seeded, searched, deleted, not_found, dropped = entries
    assert json.loads(seeded["request"]["postData"]["text"]) == {
        "profiles": [{"email": "someone@example.com", "count": 2}]}
    assert seeded["response"]["content"]["text"] == seed.get_data(as_text=True)

    request = searched["request"]
    assert header(request["headers"], "X-Request-Id") == "req-17"
    assert header(request["headers"], "User-Agent") == "shop-sync/2.1"
    assert request["queryString"] == [{"name": "email", "value": "someone@example.com"}]
    assert "postData" not in request and request["bodySize"] == 0
    response = searched["response"]
    assert (response["statusText"], response["httpVersion"]) == ("OK", "HTTP/1.1")
    assert response["content"] == {"size": len(search.data), "mimeType": "application/json",
                                   "text": search.get_data(as_text=True)}
    assert header(response["headers"], "Content-Type") == "application/json"
    assert searched["_fakeshift"] == {"id": journaled[1]["id"], "account": "test-key",
                                      "operation": "blueshift.search_customers", "fault": None}

    assert deleted["request"]["postData"] == {"mimeType": "application/json",
                                              "text": '{"email": "someone@example.com"}'}
    # Headers the app set after the handler (here the contract and scheduling ones) are kept.
    assert header(deleted["response"]["headers"], "X-Fakeshift-Scheduled") == \
        delete.headers["X-Fakeshift-Scheduled"] == "2"
    assert not_found["response"]["status"] == missing.status_code == 404
    assert not_found["response"]["statusText"] == "Not Found"
    assert not_found["response"]["content"]["text"] == missing.get_data(as_text=True)

    assert dropped["response"]["status"] == 0 and dropped["response"]["headers"] == []
    assert "fault header dropped the connection" in dropped["response"]["comment"]
    assert dropped["_fakeshift"]["fault"] == "header"


def test_the_filters_are_the_journals(client):
    alice, bob = Blueshift(client, "alice"), Blueshift(client, "bob")
    for _ in range(3):
        alice.get(SEARCH)
        bob.get("/api/v1/custom_user_lists/id/3")
    for filters in ({"account": "bob"}, {"status": "4xx", "limit": 2}, {"path": "/api/v1/customers"},
                    {"operation": "search_customers", "after": 3}):
        wanted = client.get("/_fakeshift/journal", query_string=filters).json["entries"]
        found = har(client, **filters)["log"]["entries"]
        assert [e["_fakeshift"]["id"] for e in found] == [e["id"] for e in wanted]
        assert found, filters
    refused = client.get("/_fakeshift/journal.har", query_string={"colour": "red"})
    assert refused.status_code == 400 and "colour" in refused.json["errors"]


def test_reads_of_the_har_are_not_journaled(client, api):
    api.get(SEARCH)
    for _ in range(3):
        har(client)
    assert client.get("/_fakeshift/journal").json["count"] == 1


ADMIN_TOKEN = "admin-Tok3n-secret"
API_KEY = "shop/key 9f2c"


def test_credentials_never_appear_even_with_the_people_unmasked():
    app = create_app({"admin_token": ADMIN_TOKEN, "api_keys": [f"{API_KEY}@shop"]})
    client = app.test_client()
    admin = {"X-Fakeshift-Admin-Token": ADMIN_TOKEN}
    shop = Blueshift(client, API_KEY)
    shop.post(f"/api/v1/customers/forget?token={ADMIN_TOKEN}",
              json={"email": "ann@example.com", "customer_id": API_KEY})
    # Flask's test client sends its cookie jar in place of a Cookie header.
    client.set_cookie("session", "abc123")
    shop.get(SEARCH)
    client.get("/_fakeshift/violations", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    client.get("/_fakeshift/accounts/shop", headers=admin)
    # The key in a query string, where clients percent-encode it each their own way.
    client.get("/_fakeshift/violations", query_string={"account": API_KEY}, headers=admin)

    response = client.get("/_fakeshift/journal.har", headers=admin,
                          query_string={"redact": "false"})
    text = response.get_data(as_text=True)
    document = valid_har(json.loads(text))
    forms = [ADMIN_TOKEN, API_KEY, quote(API_KEY, safe=""), quote_plus(API_KEY),
             base64.b64encode(f"{API_KEY}:".encode()).decode(), "abc123"]
    assert [form for form in forms if form in text] == []
    forget, search, bearer, account, by_key = document["log"]["entries"]
    assert by_key["request"]["url"].endswith("/_fakeshift/violations?account=%5Bredacted%5D")
    assert header(forget["request"]["headers"], "Authorization") == "[redacted]"
    assert forget["request"]["url"].endswith("/api/v1/customers/forget?token=%5Bredacted%5D")
    assert forget["request"]["queryString"] == [{"name": "token", "value": "[redacted]"}]
    assert json.loads(forget["request"]["postData"]["text"]) == {
        "email": "ann@example.com", "customer_id": "[redacted]"}
    assert header(search["request"]["headers"], "Cookie") == "[redacted]"
    assert header(bearer["request"]["headers"], "Authorization") == "[redacted]"
    assert header(account["request"]["headers"], "X-Fakeshift-Admin-Token") == "[redacted]"
    # The account a configured key stands for is no secret.
    assert forget["_fakeshift"]["account"] == "shop"
    assert '"ann@example.com"' in forget["request"]["postData"]["text"]
    assert client.get("/_fakeshift/journal.har").status_code == 401


def test_the_people_are_masked_by_default_and_keep_one_mask_each(client, api):
    api.post("/api/v1/customers", json={"email": "Ana@example.com", "customer_id": "C-17",
                                        "device_id": "dev-1", "cookie": "ck-1", "plan": "gold"})
    api.get("/api/v1/customers?email=ana@example.com")
    listed = api.post("/api/v1/custom_user_lists/create", json={"name": "vip"}).json
    api.put(f"/api/v1/custom_user_lists/bulk_add_users_to_list/{listed['id']}",
            json={"identifier_key": "email", "identifier_values": ["ANA@example.com"]})

    text = json.dumps(har(client))
    people = ["ana@example.com", "Ana@example.com", "ANA@example.com", "C-17", "dev-1", "ck-1"]
    assert [person for person in people if person in text] == []
    identify, search, _create, bulk = har(client)["log"]["entries"]
    sent = json.loads(identify["request"]["postData"]["text"])
    answered = json.loads(identify["response"]["content"]["text"])["customer"]
    email_mask = sent["email"]
    assert email_mask.startswith("masked-") and email_mask.endswith("@redacted.invalid")
    # One person, one mask: in the request and the answer, in any ASCII case, in the query and
    # in a list call's values; fields that name no one stay.
    assert answered["email"] == email_mask and answered["customer_id"] == sent["customer_id"]
    assert search["request"]["queryString"] == [{"name": "email", "value": email_mask}]
    assert json.loads(bulk["request"]["postData"]["text"])["identifier_values"] == [email_mask]
    assert sent["plan"] == "gold" and sent["customer_id"] != sent["device_id"]
    assert har(client) == har(client)


def test_in_open_mode_the_key_is_the_account_and_only_its_header_is_redacted(client, api):
    api.get(SEARCH)
    entry = har(client)["log"]["entries"][0]
    assert header(entry["request"]["headers"], "Authorization") == "[redacted]"
    assert entry["_fakeshift"]["account"] == "test-key"
    assert basic("test-key")["Authorization"].split()[1] not in json.dumps(entry)


def test_bodies_are_cut_as_in_the_journal_and_their_sizes_kept():
    app = create_app({"journal_body_bytes": 16})
    client = app.test_client()
    body = json.dumps({"email": "x" * 100 + "@example.com"})
    answered = Blueshift(client).post("/api/v1/customers/forget", data=body,
                                      content_type="application/json")
    entry = har(client)["log"]["entries"][0]
    post = entry["request"]["postData"]
    assert (post["text"], entry["request"]["bodySize"]) == (body[:16], len(body))
    assert post["comment"] == f"the first 16 of {len(body)} bytes (--journal-body-bytes)"
    content = entry["response"]["content"]
    assert content["text"] == answered.get_data(as_text=True)[:16]
    assert content["size"] == entry["response"]["bodySize"] == len(answered.data) > 16
    assert "of" in content["comment"]


def test_request_headers_are_kept_within_their_budget(client, api):
    many = {f"X-Trace-{number}": "t" * 200 for number in range(60)}
    api.get(SEARCH, headers=many)
    request = har(client)["log"]["entries"][0]["request"]
    kept = [h for h in request["headers"] if h["name"].startswith("X-Trace-")]
    assert 0 < len(kept) < 60
    # WSGI names (HTTP_X_TRACE_1) are what the budget counts.
    assert sum(len(h["name"]) + 5 + len(h["value"]) for h in request["headers"]) \
        <= STORED_HEADER_CHARACTERS
    assert request["comment"].startswith(f"{60 - len(kept)} more headers not kept")


def test_keeping_headers_and_the_response_costs_microseconds():
    """The record step with what a real client sends (eight headers) and a response body: what
    the HAR's recording adds to every request (compare test_journal.py's trivial request)."""
    app = create_app({"journal_size": 10_000})
    environ = {"PATH_INFO": "/api/v1/customers/delete", "REQUEST_METHOD": "POST",
               "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8080", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
               "HTTP_HOST": "127.0.0.1:8080", "HTTP_USER_AGENT": "python-requests/2.32.3",
               "HTTP_ACCEPT": "*/*", "HTTP_ACCEPT_ENCODING": "gzip, deflate",
               "HTTP_CONNECTION": "keep-alive", "HTTP_AUTHORIZATION": "Basic YWNjdDo=",
               "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "32"}
    added = recording_microseconds(
        app, environ, body=b'{"email": "a@example.com"}', response_body=b'{"status":"ok"}',
        response_headers=[("Content-Type", "application/json"), ("Content-Length", "15")])
    print(f"journal record step with headers and response: {added:.2f} us per request")
    assert len(app.extensions["fakeshift"].journal) == 10_000
    assert added < 100


def run_command(*argv: str) -> int:
    """`fakeshift journal ...` through the parser fakeshift's CLI adds it to."""
    parser = argparse.ArgumentParser(prog="fakeshift")
    journal_command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["journal", *argv])
    return args.run(args)


def test_the_command_saves_the_har_of_a_running_server(start_server, tmp_path, capsys):
    server = start_server("--access-log", "false", "--admin-token", ADMIN_TOKEN)
    for key in ("cli-a", "cli-b"):
        requests.get(f"{server.url}{SEARCH}", auth=(key, ""), timeout=5)
    saved = tmp_path / "journal.har"
    assert run_command("--har", str(saved), "--url", server.url, "--admin-token", ADMIN_TOKEN,
                       "--account", "cli-b") == 0
    document = valid_har(json.loads(saved.read_text(encoding="utf-8")))
    [entry] = document["log"]["entries"]
    assert "someone@example.com" not in entry["request"]["url"]
    assert header(entry["request"]["headers"], "Authorization") == "[redacted]"
    assert capsys.readouterr().err == f"wrote {saved} (HAR 1.2, entries: 1)\n"
    assert run_command("--har", str(saved), "--url", server.url, "--admin-token", ADMIN_TOKEN,
                       "--account", "cli-b", "--no-redact") == 0
    [entry] = json.loads(saved.read_text(encoding="utf-8"))["log"]["entries"]
    assert entry["request"]["url"] == f"{server.url}{SEARCH}"
    capsys.readouterr()

    assert run_command("--har", "-", "--url", server.url, "--admin-token", ADMIN_TOKEN) == 0
    assert len(valid_har(json.loads(capsys.readouterr().out))["log"]["entries"]) == 2

    # Without the token: the server's refusal, in one line.
    assert run_command("--har", str(saved), "--url", server.url) == 2
    error = capsys.readouterr().err
    assert error.startswith("fakeshift: error: GET ") and " answered 401: " in error
    assert error.count("\n") == 1


def test_an_unreachable_server_is_one_line_and_exit_2(tmp_path, capsys):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    assert run_command("--har", str(tmp_path / "x.har"), "--url", url) == 2
    assert capsys.readouterr().err == (f"fakeshift: error: {url} cannot be reached "
                                       "(Connection refused)\n")
    assert not (tmp_path / "x.har").exists()
