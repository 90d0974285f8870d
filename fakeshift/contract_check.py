"""`fakeshift contract`: check that any running server (this emulator, another fake, or a real
Blueshift account) answers like Blueshift as openapi/blueshift.yaml and docs/design.md describe.

Two parts:
- schema checks: schemathesis generates valid and invalid requests for every operation of the
  Blueshift document and validates each answer (status documented, body shape, content type, ...);
- semantic checks: short scripted stories that need only the public Blueshift API (identify,
  search, delete twice, forget before identify, the 50-per-call delete cap), each with unique
  random identifiers so that they also work against a real account.

Both write data, so a non-local server needs `--yes-destructive`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid as uuidlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .models import BULK_CAP, DELETE_ALL_CAP

try:
    import requests
except ImportError:  # the `contract` extra is not installed; run_contract says so
    requests = None

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SERVED_DOCUMENT = "/_fakeshift/openapi/blueshift.json"
TIMEOUT = 30
# How long the first request waits for a connection: a wrong address should fail in seconds.
CONNECT_TIMEOUT = 5
# How much of a body a report shows.
SHOWN_BODY_CHARS = 400


class UsageError(Exception):
    """Refused before anything is sent (exit status 2)."""


@dataclass
class Failure:
    kind: str  # "schema" or "semantic"
    check: str
    operation: str
    sent: str
    received: str
    expected: str


@dataclass
class Report:
    base_url: str
    document_source: str
    seed: int
    schema_operations: int = 0
    schema_requests: int = 0
    semantic_passed: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def render(self) -> str:
        semantic_failed = sorted({f.check for f in self.failures if f.kind == "semantic"})
        schema_failed = [f for f in self.failures if f.kind == "schema"]
        lines = [
            f"fakeshift contract: {self.base_url}",
            f"  document: {self.document_source}",
            f"  seed: {self.seed} (repeat this run with --seed {self.seed})",
            f"  schema checks: {self.schema_operations} operations, {self.schema_requests} "
            f"requests, {len(schema_failed)} failures",
            f"  semantic checks: {len(self.semantic_passed)} passed, {len(semantic_failed)} failed",
        ]
        for failure in self.failures:
            lines += [
                "",
                f"FAIL [{failure.kind}] {failure.check}: {failure.operation}",
                f"  sent:     {failure.sent}",
                f"  received: {failure.received}",
                f"  expected: {failure.expected}",
            ]
        lines += ["", "PASSED" if self.ok else f"FAILED: {len(self.failures)} problems"]
        return "\n".join(lines)


def is_local(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "") in LOCAL_HOSTS


def _shown(body: str) -> str:
    body = body.replace("\n", " ")
    return body if len(body) <= SHOWN_BODY_CHARS else body[:SHOWN_BODY_CHARS] + "..."


# ---- the document ----------------------------------------------------------------------------

def load_document(base_url: str, session: requests.Session) -> tuple[dict, str]:
    """The server's own copy when it serves one (a fakeshift of any version describes itself),
    else the document this package ships."""
    try:
        response = session.get(base_url + SERVED_DOCUMENT, timeout=TIMEOUT)
        if response.status_code == 200 and "openapi" in response.json():
            return response.json(), f"served by the server at {SERVED_DOCUMENT}"
    except (requests.RequestException, ValueError):
        pass
    from .contract import load_document as packaged

    return packaged("blueshift"), "openapi/blueshift.yaml shipped with fakeshift"


# ---- schema checks (schemathesis) ------------------------------------------------------------

def _schemathesis_config(api_key: str, seed: int):
    import schemathesis

    return schemathesis.Config.from_dict({
        "seed": seed,
        "auth": {"basic": {"username": api_key, "password": ""}},
        # Show identifiers as sent (a cookie field is data here, not a secret); hide the key.
        "output": {"sanitization": {"keys-to-sanitize": ["authorization"]}},
        "checks": {
            # fakeshift's default mode takes any key as an account of its own, so "another key
            # works too" is the design there; the semantic checks test missing credentials.
            "ignored_auth": {"enabled": False},
            # Blueshift refuses a bulk call over 50 customers with 413, not 400.
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415",
                                      "422", "429"],
            },
        },
        "operations": [
            {
                # Two rules the document cannot express make a valid request a 400: list names
                # are unique per account, and an identifier_key must be the list's source.
                "include-operation-id-regex":
                    "^(create_list|add_user_to_list|remove_user_from_list)$",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"],
                    },
                },
            },
        ],
    })


def run_schema_checks(report: Report, document: dict, api_key: str, examples: int,
                      session: requests.Session) -> None:
    import hypothesis
    import schemathesis
    from schemathesis.core.failures import FailureGroup

    schema = schemathesis.openapi.from_dict(document, config=_schemathesis_config(api_key,
                                                                                 report.seed))
    seen: set[tuple[str, str]] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        report.schema_operations += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.seed(report.seed)
            @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                                 phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                                 suppress_health_check=list(hypothesis.HealthCheck))
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def exercise(case):
                report.schema_requests += 1
                try:
                    response = case.call(base_url=report.base_url, session=session,
                                         timeout=TIMEOUT)
                except requests.RequestException as exc:
                    _record_schema(report, seen, case, "no answer", _root_cause(exc),
                                   "an HTTP answer")
                    return
                try:
                    case.validate_response(response)
                except FailureGroup as group:
                    for failure in group.exceptions:
                        _record_schema(report, seen, case, failure.title,
                                       f"{response.status_code} {_shown(response.text)}",
                                       failure.message.strip() or failure.title)

            exercise()


def _record_schema(report: Report, seen: set, case, check: str, received: str,
                   expected: str) -> None:
    # One report line per operation and broken rule: the first example is enough to act on.
    label = f"{case.method.upper()} {case.operation.path}"
    if (label, check) in seen:
        return
    seen.add((label, check))
    sent = case.as_curl_command(headers={"Authorization": "Basic ..."},
                                base_url=report.base_url)
    report.failures.append(Failure("schema", check, label, _shown(sent), received,
                                   _shown(" ".join(expected.split()))))


# ---- semantic checks (the public Blueshift API only) -----------------------------------------

class CheckFailed(Exception):
    def __init__(self, operation: str, sent: str, received: str, expected: str):
        super().__init__(operation)
        self.operation, self.sent, self.received, self.expected = operation, sent, received, expected


class Blueshift:
    """The few public calls the semantic checks make, each answer checked on arrival."""

    def __init__(self, base_url: str, api_key: str, session: requests.Session):
        self.base_url = base_url
        self.session = session
        self.auth = (api_key, "")
        self.last_headers: dict = {}

    def call(self, method: str, path: str, expect: int, *, params=None, body=None,
             expect_body=None) -> dict:
        sent = f"{method} {path}" + (f"?{_query(params)}" if params else "")
        if body is not None:
            sent += f" {json.dumps(body)}"
        try:
            response = self.session.request(method, self.base_url + path, params=params,
                                            json=body, auth=self.auth, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise CheckFailed(f"{method} {path}", sent, f"no answer: {_root_cause(exc)}",
                              f"HTTP {expect}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        received = f"{response.status_code} {_shown(response.text)}"
        if response.status_code != expect:
            raise CheckFailed(f"{method} {path}", sent, received, f"HTTP {expect}")
        if not isinstance(answer, dict):
            raise CheckFailed(f"{method} {path}", sent, received, "a JSON object")
        if expect_body is not None and answer != expect_body:
            raise CheckFailed(f"{method} {path}", sent, received,
                              f"{expect} {json.dumps(expect_body)}")
        self.last_headers = response.headers
        return answer


def _query(params: dict) -> str:
    return "&".join(f"{k}={v}" for k, v in params.items())


OK = {"status": "ok"}
NOT_FOUND = {"message": "Customer not found"}


def _identify(api: Blueshift, **identifiers) -> str:
    answer = api.call("POST", "/api/v1/customers", 200, body=identifiers)
    customer = answer.get("customer")
    if not isinstance(customer, dict) or not isinstance(customer.get("uuid"), str):
        raise CheckFailed("POST /api/v1/customers", json.dumps(identifiers), json.dumps(answer),
                          '{"customer": {"uuid": "...", ...}}')
    return customer["uuid"]


def _search(api: Blueshift, email: str) -> list[str]:
    answer = api.call("GET", "/api/v1/customers", 200, params={"email": email})
    users = answer.get("users")
    if not isinstance(users, list):
        raise CheckFailed("GET /api/v1/customers", f"GET /api/v1/customers?email={email}",
                          json.dumps(answer), '{"users": [...]}')
    return [user.get("uuid") for user in users]


def check_delete_twice(api: Blueshift, unique: str) -> None:
    """identify -> search finds it -> delete -> a second delete finds nothing (404)."""
    email = f"{unique}-delete@example.com"
    made = _identify(api, email=email, customer_id=f"{unique}-delete")
    if made not in _search(api, email):
        raise CheckFailed("GET /api/v1/customers", f"GET /api/v1/customers?email={email}",
                          "the new customer was not listed", f"a user with uuid {made}")
    api.call("POST", "/api/v1/customers/delete", 200, body={"email": email}, expect_body=OK)
    api.call("POST", "/api/v1/customers/delete", 404, body={"email": email},
             expect_body=NOT_FOUND)


def check_forget_before_identify(api: Blueshift, unique: str) -> None:
    """Forgetting an unknown email succeeds and suppresses it: a later identify creates nothing;
    unforget lifts that, and the next identify makes a new profile."""
    email = f"{unique}-forget@example.com"
    forgotten = api.call("POST", "/api/v1/customers/forget", 200, body={"email": email})
    if forgotten.get("status") != "ok" and not forgotten.get("customer", {}).get("is_forgotten"):
        raise CheckFailed("POST /api/v1/customers/forget", json.dumps({"email": email}),
                          json.dumps(forgotten), '{"status": "ok"} or is_forgotten: true')
    api.call("POST", "/api/v1/customers", 200, body={"email": email})
    if _search(api, email):
        raise CheckFailed("POST /api/v1/customers", json.dumps({"email": email}),
                          "a customer with that email now exists",
                          "nothing created: the email was forgotten")
    api.call("POST", "/api/v1/customers/unforget", 200, body={"email": email})
    made = _identify(api, email=email)
    if _search(api, email) != [made]:
        raise CheckFailed("POST /api/v1/customers", json.dumps({"email": email}),
                          "search does not show exactly the new customer after unforget",
                          f"one user, uuid {made}")
    api.call("POST", "/api/v1/customers/delete", 200, body={"email": email})


def check_delete_all_cap(api: Blueshift, unique: str) -> None:
    """Two caps' worth and 20 more profiles sharing one email (120 with Blueshift's cap of 50)
    take three delete-all calls (50, 50, 20), then 404."""
    email = f"{unique}-dupes@example.com"
    total = 2 * DELETE_ALL_CAP + 20
    for start in range(0, total, BULK_CAP):
        customers = [{"email": email, "customer_id": f"{unique}-dupe-{n}"}
                     for n in range(start, min(start + BULK_CAP, total))]
        api.call("POST", "/api/v1/customers/bulk", 200, body={"customers": customers})
    if len(_search(api, email)) != total:
        raise CheckFailed("POST /api/v1/customers/bulk", f"bulk calls of {BULK_CAP}",
                          f"{len(_search(api, email))} customers with the email", str(total))
    for expected_count in (DELETE_ALL_CAP, DELETE_ALL_CAP, total - 2 * DELETE_ALL_CAP):
        api.call("POST", "/api/v1/customers/delete", 200, body={"email": email},
                 params={"delete_all_matching_customers": "true"}, expect_body=OK)
        scheduled = api.last_headers.get("X-Fakeshift-Scheduled")
        if scheduled is not None and scheduled != str(expected_count):
            raise CheckFailed("POST /api/v1/customers/delete",
                              f"delete_all_matching_customers=true {json.dumps({'email': email})}",
                              f"X-Fakeshift-Scheduled: {scheduled}", f"{expected_count} scheduled")
    api.call("POST", "/api/v1/customers/delete", 404, body={"email": email},
             params={"delete_all_matching_customers": "true"}, expect_body=NOT_FOUND)


def check_delete_one_at_a_time(api: Blueshift, unique: str) -> None:
    """Without the flag a delete takes the first match only; the flag may also be a body field."""
    email = f"{unique}-pair@example.com"
    for n in range(3):
        _identify(api, email=email, customer_id=f"{unique}-pair-{n}")
    api.call("POST", "/api/v1/customers/delete", 200, body={"email": email}, expect_body=OK)
    api.call("POST", "/api/v1/customers/delete", 200,
             body={"email": email, "delete_all_matching_customers": True}, expect_body=OK)
    api.call("POST", "/api/v1/customers/delete", 404, body={"email": email},
             expect_body=NOT_FOUND)


def check_credentials_required(api: Blueshift, unique: str) -> None:
    """A call without an API key answers 401 and changes nothing."""
    email = f"{unique}-anonymous@example.com"
    try:
        response = api.session.post(api.base_url + "/api/v1/customers", json={"email": email},
                                    timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise CheckFailed("POST /api/v1/customers", "no Authorization header",
                          f"no answer: {_root_cause(exc)}", "HTTP 401")
    if response.status_code != 401:
        raise CheckFailed("POST /api/v1/customers",
                          f"POST /api/v1/customers {json.dumps({'email': email})} with no "
                          "Authorization header",
                          f"{response.status_code} {_shown(response.text)}", "HTTP 401")
    if _search(api, email):
        raise CheckFailed("POST /api/v1/customers", "no Authorization header",
                          "a customer was created", "nothing created")


def check_unknown_group_and_list(api: Blueshift, unique: str) -> None:
    """Missing groups and lists answer 404 with Blueshift's messages."""
    api.call("DELETE", f"/api/v1/customer_group/{unique}-no-such-group", 404,
             params={"delete_users": "false"},
             expect_body={"message": "The specified group ID was not found."})
    api.call("PUT", f"/api/v1/custom_user_lists/remove_user_from_list/{random.randint(10**8, 10**9)}",
             404, body={"identifier_key": "email", "identifier_value": f"{unique}@example.com"},
             expect_body={"message": "The customer list you are looking for could not be found."})


SEMANTIC_CHECKS = (check_delete_twice, check_forget_before_identify, check_delete_all_cap,
                   check_delete_one_at_a_time, check_credentials_required,
                   check_unknown_group_and_list)


def run_semantic_checks(report: Report, api_key: str, session: requests.Session) -> None:
    api = Blueshift(report.base_url, api_key, session)
    for check in SEMANTIC_CHECKS:
        name = check.__name__.removeprefix("check_").replace("_", " ")
        unique = f"fakeshift-contract-{uuidlib.uuid4().hex[:12]}"
        try:
            check(api, unique)
        except CheckFailed as failed:
            report.failures.append(Failure("semantic", name, failed.operation, failed.sent,
                                           failed.received, failed.expected))
        else:
            report.semantic_passed.append(name)


# ---- the command -----------------------------------------------------------------------------

def add_parser(sub) -> None:
    p = sub.add_parser(
        "contract", help="check any running Blueshift-like server against the contract",
        description="Run property-based schema checks (schemathesis) and semantic checks "
                    "against a running server. Both create and delete customers: a server that "
                    "is not on this machine needs --yes-destructive.")
    p.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080")
    p.add_argument("--api-key", required=True, help="the Blueshift API key to send")
    p.add_argument("--examples", type=int, default=20,
                   help="generated requests per operation and mode (valid, invalid); default 20")
    p.add_argument("--seed", type=int, help="repeat a run exactly (the report prints its seed)")
    p.add_argument("--yes-destructive", action="store_true",
                   help="allow a server that is not on 127.0.0.1/localhost/::1")
    p.set_defaults(run=main)


def run_contract(base_url: str, api_key: str, examples: int = 20, seed: int | None = None,
          yes_destructive: bool = False) -> Report:
    base_url = base_url.rstrip("/")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).hostname:
        raise UsageError(f"--base-url must be an http(s) URL, not {base_url!r}")
    if examples < 1:
        raise UsageError("--examples must be at least 1")
    if not is_local(base_url) and not yes_destructive:
        raise UsageError(
            f"{base_url} is not on this machine, and the checks create and delete customers "
            "there. Add --yes-destructive to run them anyway.")
    try:
        import schemathesis  # noqa: F401  (only to fail early with a clear message)
    except ImportError:
        schemathesis = None
    if requests is None or schemathesis is None:
        raise UsageError("the contract command needs schemathesis and requests: "
                         "pip install 'fakeshift[contract]'")
    session = requests.Session()
    try:
        session.get(base_url + "/", timeout=(CONNECT_TIMEOUT, TIMEOUT))
    except requests.RequestException as exc:
        raise UsageError(f"cannot reach {base_url}: {_root_cause(exc)}") from exc
    document, source = load_document(base_url, session)
    report = Report(base_url, source, seed if seed is not None else random.randrange(2**32))
    run_schema_checks(report, document, api_key, examples, session)
    run_semantic_checks(report, api_key, session)
    return report


def _root_cause(exc: BaseException) -> str:
    """Why a connection failed, in the operating system's words ("Connection refused", "Name or
    service not known"), instead of the chain of exceptions urllib3 wraps around it."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    words, seen = None, set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.strerror:
            words = exc.strerror
        # urllib3's MaxRetryError keeps what went wrong in `reason`, not as its cause.
        reason = getattr(exc, "reason", None)
        exc = reason if isinstance(reason, BaseException) else exc.__cause__ or exc.__context__
    return words or first_line


def main(args: argparse.Namespace) -> int:
    try:
        report = run_contract(args.base_url, args.api_key, args.examples, args.seed,
                       args.yes_destructive)
    except UsageError as exc:
        print(f"fakeshift contract: error: {exc}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1
