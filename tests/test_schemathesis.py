"""The emulator conforms to its own Blueshift document: schemathesis generates valid and invalid
requests from openapi/blueshift.yaml and runs every check on the answers, in-process against the
WSGI app and over real HTTP against `fakeshift serve`, one operation at a time and as stateful
sequences that follow the document's links; and an independent `schemathesis run --checks all`
with no configuration of ours reports nothing but the decisions the document cannot express."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import hypothesis
import pytest
import requests
import schemathesis

from conftest import ROOT, ServerProcess
from fakeshift import create_app
from fakeshift.contract import VIOLATION_HEADER, load_document

DOCUMENT = "/_fakeshift/openapi/blueshift.json"
KEY = "schemathesis-key"
EXAMPLES = 100
LONG_EXAMPLES = 1000


def _config(max_examples: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": 20261122,
        "auth": {"basic": {"username": KEY, "password": ""}},
        "generation": {
            "mode": "all",
            "max-examples": max_examples,
            "deterministic": True,
        },
        "checks": {
            # A bulk call with more than 50 customers breaks `maxItems: 50`, and the emulator
            # refuses it with 413 "You can upload maximum 50 users in one api call", as
            # Blueshift does (design.md); 413 is a rejection, so count it as one.
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413",
                                      "415", "422", "428", "429", "5xx"],
            },
        },
        "operations": [
            {
                # The document cannot express two decisions of design.md that make a valid
                # request a 400: list names are unique per account, and an identifier_key must
                # be the list's source. Only these operations accept a 400 for valid data.
                "include-operation-id-regex": "^(create_list|add_user_to_list|remove_user_from_list)$",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429",
                                              "5xx"],
                    },
                },
            },
            {
                # The same source rule for the bulk calls, and their cap: 25 values, or 500 with
                # async=true, which a schema cannot tie to the query parameter (413 past it).
                "include-operation-id-regex": "^bulk_(add_users_to|remove_users_from)_list$",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "413",
                                              "429", "5xx"],
                    },
                },
            },
            {
                # A merge names two customers; a link from identify brings one of them, and the
                # other, generated, matches nobody: the 404 is the right answer, not a lost
                # resource.
                "include-operation-id-regex": "^merge_customers$",
                "checks": {"ensure_resource_availability": {"enabled": False}},
            },
        ],
    })


# With a configured key, not in the default mode where any key is an account of its own:
# otherwise every key is valid and the ignored-auth check could not tell a bug from the design.
APP = create_app({"api_keys": (KEY,)})
# The operations answered from the document (fakeshift/surface.py) have no semantics of their
# own to explore: Blueshift's export drives them (test_export_conformance.py) and
# test_rest_of_the_api.py checks their storage. Every phase here is for the emulated domain.
ANSWERED_FROM_DOCUMENT = [operation["operationId"]
                          for item in load_document("blueshift")["paths"].values()
                          for operation in item.values() if "x-fakeshift" in operation]
in_process = schemathesis.openapi.from_wsgi(
    DOCUMENT, APP, config=_config(EXAMPLES)).exclude(operation_id=ANSWERED_FROM_DOCUMENT)
in_process_long = schemathesis.openapi.from_wsgi(
    DOCUMENT, APP, config=_config(LONG_EXAMPLES)).exclude(operation_id=ANSWERED_FROM_DOCUMENT)
# The same document, sent over a socket: the schema is loaded without an app so that every call
# goes through `requests` to the real server (test_openapi_documents proves the served copy is
# this file).
over_http = schemathesis.openapi.from_dict(
    load_document("blueshift"), config=_config(EXAMPLES)).exclude(
        operation_id=ANSWERED_FROM_DOCUMENT)


@pytest.fixture(scope="module")
def keyed_server():
    server = ServerProcess("--api-key", KEY, "--access-log", "false")
    server.wait_ready()
    yield server
    server.stop()


@in_process.parametrize()
@hypothesis.settings(deadline=None)
def test_in_process(case):
    case.call_and_validate()


@pytest.mark.long
@in_process_long.parametrize()
@hypothesis.settings(deadline=None)
def test_in_process_long(case):
    case.call_and_validate()


@over_http.parametrize()
@hypothesis.settings(deadline=None)
def test_over_http(case, keyed_server):
    case.call_and_validate(base_url=keyed_server.url)


class Sequences(in_process.as_state_machine()):
    def setup(self):
        # Each sequence starts from an empty emulator, so a replayed sequence sees the same ids.
        APP.extensions["fakeshift"].reset("empty")


SEQUENCE_SETTINGS = hypothesis.settings(
    max_examples=25, stateful_step_count=20, deadline=None, derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
TestSequencesInProcess = Sequences.TestCase
TestSequencesInProcess.settings = SEQUENCE_SETTINGS


def test_sequences_over_http(keyed_server):
    class SequencesOverHttp(over_http.as_state_machine()):
        def setup(self):
            reset = requests.post(f"{keyed_server.url}/_fakeshift/reset?to=empty", timeout=10)
            assert reset.status_code == 200

        def get_call_kwargs(self, case):
            return {"base_url": keyed_server.url}

    SequencesOverHttp.run(settings=SEQUENCE_SETTINGS)


# ---- an independent run of the command line --------------------------------------------------

# Blueshift's decisions that make schemathesis's generic checks fail and that a schema cannot
# express (the operations' descriptions state them): the only failures an independent run may
# report, each as the check and operation, with the status and error text the emulator answers
# (and, after them, any text the failure's own message must hold).
DOCUMENTED_DECISIONS = {
    # 51 customers break `maxItems: 50`; Blueshift answers 413 where schemathesis expects 400.
    ("negative_data_rejection", "POST /api/v1/customers/bulk"):
        (413, "You can upload maximum 50 users in one api call"),
    # List names are unique per account.
    ("positive_data_acceptance", "POST /api/v1/custom_user_lists/create"):
        (400, "has already been taken"),
    # identifier_key must be the list's source.
    ("positive_data_acceptance", "PUT /api/v1/custom_user_lists/add_user_to_list/{list_id}"):
        (400, "does not match the list's source"),
    ("positive_data_acceptance", "PUT /api/v1/custom_user_lists/remove_user_from_list/{list_id}"):
        (400, "does not match the list's source"),
    ("positive_data_acceptance",
     "PUT /api/v1/custom_user_lists/bulk_add_users_to_list/{list_id}"):
        (400, "does not match the list's source"),
    ("positive_data_acceptance",
     "PUT /api/v1/custom_user_lists/bulk_remove_users_from_list/{list_id}"):
        (400, "does not match the list's source"),
    # 101 events break `maxItems: 100`; the emulator answers 413, as for bulk customers.
    ("negative_data_rejection", "POST /api/v1/bulkevents"):
        (413, "You can upload maximum 100 events in one api call"),
    # A merge names two customers, and either one unknown is a 404 (the merge's description).
    # The stateful phase takes /customers/merge for an item of /customers: it links a customer
    # that identify created into one of the fields and generates the other, which matches
    # nobody. Only that pair: a customer identify created must stay readable everywhere else.
    ("ensure_resource_availability", "POST /api/v1/customers"):
        (404, "Customer not found", "Not available with: `POST /api/v1/customers/merge`"),
}
CLI_SEED = "20261203"
# Enough for every phase to reach the decisions above, and about 20 s on a loaded 2-core machine.
CLI_EXAMPLES = "20"
# The emulator's own reading of the document, to judge the requests schemathesis actually sent.
CONTRACT = create_app({"api_keys": (KEY,)}).test_client()


@dataclass(frozen=True)
class Failure:
    check: str
    operation: str
    phase: str
    message: str
    status: int | None
    answer: str
    request: str  # as sent, in JSON: the ndjson report's method, uri, headers and base64 body


def _breaks_the_document(sent: dict) -> bool:
    """Whether a request as schemathesis sent it breaks the document, as the contract reads it."""
    url = urlsplit(sent["uri"])
    body = sent.get("body")
    response = CONTRACT.open(
        url.path, method=sent["method"], query_string=url.query,
        headers=[(name, value) for name, values in sent["headers"].items() for value in values],
        data=base64.b64decode(body["$base64"]) if body else b"")
    return VIOLATION_HEADER in response.headers


def _decoded(content: dict | None) -> str:
    return base64.b64decode(content["$base64"]).decode("utf-8", "replace") if content else ""


def _events(path) -> list[tuple[str, dict]]:
    return [next(iter(json.loads(line).items())) for line in path.read_text().splitlines()]


def _failures(events: list[tuple[str, dict]]) -> set[Failure]:
    found = set()
    for name, event in events:
        if name != "ScenarioFinished":
            continue
        recorder = event["recorder"]
        for case_id, checks in recorder.get("checks", {}).items():
            interaction = recorder.get("interactions", {}).get(case_id, {})
            response = interaction.get("response") or {}
            for check in checks:
                if check["status"] == "failure":
                    failure = check["failure_info"]["failure"]
                    found.add(Failure(
                        check["name"], failure["operation"], event["phase"], failure["message"],
                        response.get("status_code"), _decoded(response.get("content")),
                        json.dumps(interaction.get("request"), sort_keys=True)))
    return found


def test_an_independent_run_reports_only_the_documented_decisions(start_server, tmp_path):
    server = start_server("--api-key", KEY, "--access-log", "false")
    events_file = tmp_path / "events.ndjson"
    completed = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(ROOT / "openapi" / "blueshift.yaml"),
         "--url", server.url, "--auth", f"{KEY}:", "--checks", "all",
         "--seed", CLI_SEED, "--max-examples", CLI_EXAMPLES, "--workers", "1",
         "--generation-database", "none", "--no-color",
         "--report", "ndjson", "--report-ndjson-path", str(events_file)],
        # In an empty directory no schemathesis.toml is found: checks and statuses are its own.
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    summary = completed.stdout[-4000:] + completed.stderr[-2000:]
    events = _events(events_file)
    assert "EngineFinished" in {name for name, _ in events}, summary
    assert [name for name, _ in events if "Error" in name] == [], summary

    documented, unexpected = set(), []
    for failure in sorted(_failures(events), key=repr):
        decision = DOCUMENTED_DECISIONS.get((failure.check, failure.operation))
        if (decision and failure.status == decision[0] and decision[1] in failure.answer
                and all(text in failure.message for text in decision[2:])):
            documented.add((failure.check, failure.operation))
        elif (failure.phase == "stateful" and failure.check == "negative_data_rejection"
              and not _breaks_the_document(json.loads(failure.request))):
            # schemathesis#2983: in the stateful phase a link's values or the --auth credentials
            # can replace the invalid part of a negative case after it was generated; what
            # reached the server was valid, so accepting it was right.
            continue
        else:
            unexpected.append(failure)
    assert unexpected == [], "\n".join(
        f"{f.phase}: {f.check} on {f.operation}: [{f.status}] {f.answer[:300]}\n{f.message}\n"
        for f in unexpected) + summary
    # Each decision was reached, so none of them is allowed for nothing.
    assert documented == set(DOCUMENTED_DECISIONS), summary


def _sent(body: bytes, headers: dict) -> dict:
    return {"method": "POST", "uri": "http://127.0.0.1:1/api/v1/customers/unforget",
            "headers": {name: [value] for name, value in headers.items()},
            "body": {"$base64": base64.b64encode(body).decode()}}


def test_the_judge_of_a_sent_request_tells_valid_from_broken():
    json_type = {"Content-Type": "application/json"}
    credentials = {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
    # As in schemathesis#2983: the case was generated without credentials and with random bytes,
    # but --auth and a link put a valid request on the wire.
    assert not _breaks_the_document(_sent(b'{"customer_id": "38759877"}',
                                          {"0": "", **json_type, **credentials}))
    assert _breaks_the_document(_sent(b'{"customer_id": "38759877"}', json_type))
    assert _breaks_the_document(_sent(b'{}', {**json_type, **credentials}))
    assert _breaks_the_document(_sent(b"\x8b\x00 not json", {**json_type, **credentials}))
