"""The emulator conforms to its own Blueshift document: schemathesis generates valid and invalid
requests from openapi/blueshift.yaml and runs every check on the answers, in-process against the
WSGI app and over real HTTP against `fakeshift serve`, one operation at a time and as stateful
sequences that follow the document's links."""

from __future__ import annotations

import hypothesis
import pytest
import requests
import schemathesis

from conftest import ServerProcess
from fakeshift import create_app
from fakeshift.contract import load_document

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
        ],
    })


# With a configured key, not in the default mode where any key is an account of its own:
# otherwise every key is valid and the ignored-auth check could not tell a bug from the design.
APP = create_app({"api_keys": (KEY,)})
in_process = schemathesis.openapi.from_wsgi(DOCUMENT, APP, config=_config(EXAMPLES))
in_process_long = schemathesis.openapi.from_wsgi(DOCUMENT, APP, config=_config(LONG_EXAMPLES))
# The same document, sent over a socket: the schema is loaded without an app so that every call
# goes through `requests` to the real server (test_openapi_documents proves the served copy is
# this file).
over_http = schemathesis.openapi.from_dict(load_document("blueshift"), config=_config(EXAMPLES))


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
