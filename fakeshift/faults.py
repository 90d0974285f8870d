"""Fault injection: ordered rules that fail, slow down or cut Blueshift requests.

A rule says which requests it targets (operation, method, path glob or regex, account), what
happens (a status with Blueshift's body for it, Retry-After, latency, a dropped connection, a
truncated or malformed body) and when (a seeded probability, the first N, every Nth, after N, a
window on the virtual clock). The first rule that targets a request *and* fires wins.

An injected fault never reaches the handler, so state is untouched; `apply` runs the handler
first (the lost-response case) and then fails. Every injected response carries
`X-Fakeshift-Fault: <rule id>`. A dropped connection and a truncated body cannot be expressed as a
Flask response: the request pipeline (fakeshift/pipeline.py) carries them out.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from flask import Blueprint, Flask, Response, current_app, request

from . import api, magic
from .clock import VirtualClock, parse_iso
from .errors import STATUS_BODIES, BlueshiftError, InvalidField, LimitReached, NotFound
from .http import answer
from .parsing import PARSED_BODY_KEY, json_object, only_fields
from .patterns import PatternError, compile_glob, compile_regex
from .scenario import ScenarioError, check_definition, definition_validator, parse_duration

HEADER = "X-Fakeshift-Fault"
HEADER_ENVIRON_KEY = "HTTP_X_FAKESHIFT_FAULT"
HEADER_RULE_ID = "header"
DEFAULT_MAX_RULES = 1000
MAX_LATENCY_SECONDS = 300.0
# Any key may send the header: a client may slow its own request this much at most (a rule
# installed through the control plane may ask for MAX_LATENCY_SECONDS).
MAX_HEADER_LATENCY_SECONDS = 30.0
MAX_HEADER_LENGTH = 2048
# Header rules keep counters per (account, header value), so each distinct value is kept
# compiled. The cache is bounded in bytes, estimated from what a compiled rule was measured to
# hold: about 4 KB, plus about 80 bytes per character once its patterns are compiled by RE2.
HEADER_RULE_CACHE_BYTES = 64 << 20
_HEADER_RULE_BASE_BYTES = 4096
_HEADER_RULE_BYTES_PER_CHARACTER = 96
FLAGS = ("drop", "truncate", "malformed", "apply")
_RULE_VALIDATOR = definition_validator("fault_rule")


class FaultSpecError(ValueError):
    """A fault rule that cannot be installed; the message says where and why."""


@cache
def blueshift_operations() -> frozenset[str]:
    """The endpoint names a rule may target, read from the Blueshift blueprint itself."""
    probe = Flask("fakeshift-operations")
    probe.register_blueprint(api.bp)
    return frozenset(name for name in probe.view_functions if name.startswith(f"{api.bp.name}."))


def operation_name(name: str, where: str) -> str:
    """`delete_customer` or `blueshift.delete_customer` -> the full endpoint name, checked."""
    full = name if "." in name else f"{api.bp.name}.{name}"
    if full not in blueshift_operations():
        known = ", ".join(sorted(n.split(".", 1)[1] for n in blueshift_operations()))
        raise FaultSpecError(f"{where}: operation: unknown operation {name!r} (known: {known})")
    return full


# ---- the compact syntax: `delete_customer:status=503,first=2` --------------------------------

def parse_spec(spec) -> dict:
    """A rule document from `[TARGET:]key=value,...`, from JSON, or a dict as it is.

    TARGET is an operation (`delete_customer`), a path glob (`/api/v1/customers/*`), a method
    and path (`POST /api/v1/customers/delete`) or `*`. Keys are the JSON fields; `drop`,
    `truncate`, `malformed` and `apply` may stand alone; a bare number is a status; a latency
    range is `latency=100ms..300ms`."""
    if isinstance(spec, dict):
        return dict(spec)
    text = str(spec).strip()
    if text.startswith("{"):
        return json_spec(text, "a fault rule")
    target, colon, rest = text.partition(":")
    if colon and "=" not in target:
        return {**_target(target.strip()), **parse_pairs(rest)}
    return parse_pairs(text)


def json_spec(text: str, what: str) -> dict:
    """A flag or header value written as a JSON object."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise FaultSpecError(f"{text!r}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise FaultSpecError(f"{text!r}: {what} must be a JSON object")
    return document


def _target(target: str) -> dict:
    if target in ("", "*"):
        return {}
    method, space, path = target.partition(" ")
    if space:
        return {"method": method, "path": path.strip()}
    if target.startswith("/"):
        return {"path": target}
    return {"operation": target}


def parse_pairs(text: str) -> dict:
    """`status=503,first=2,drop` -> {"status": 503, "first": 2, "drop": True} (unchecked)."""
    document: dict = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals:
            if key.isdigit():
                document["status"] = int(key)
            else:
                document[key] = True
            continue
        document[key] = _value(key, value.strip())
    return document


def _value(key: str, text: str):
    if key == "latency" and ".." in text:
        return [_scalar(part) for part in text.split("..", 1)]
    return _scalar(text)


def _scalar(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ---- rules ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """What happens to one request."""

    label: str
    status: int | None
    retry_after: int | None
    latency: float
    drop: bool
    truncate: bool
    malformed: bool
    apply: bool

    @property
    def fails(self) -> bool:
        """False for latency alone: the request is slowed, then served normally."""
        return bool(self.status or self.drop or self.truncate or self.malformed)

    @property
    def transport(self) -> str | None:
        return "drop" if self.drop else "truncate" if self.truncate else None


class Rule:
    """One compiled rule with its counters. Counters and the generator are guarded by the
    owning FaultRules' lock."""

    def __init__(self, document: dict, where: str, max_latency: float = MAX_LATENCY_SECONDS):
        check_definition(_RULE_VALIDATOR, document, where)
        self.document = dict(document)
        self.id: str | None = document.get("id")
        self.operation = (operation_name(document["operation"], where)
                          if "operation" in document else None)
        self.method = document["method"].upper() if "method" in document else None
        self.path = _pattern(compile_glob, document.get("path"), f"{where}: path")
        self.path_regex = _pattern(compile_regex, document.get("path_regex"),
                                   f"{where}: path_regex")
        self.account = document.get("account")
        self.status = document.get("status")
        self.retry_after = document.get("retry_after")
        self.latency = _latency(document.get("latency"), where, max_latency)
        self.drop, self.truncate, self.malformed, self.apply = (
            bool(document.get(flag)) for flag in FLAGS)
        self.probability = document.get("probability")
        self.first = document.get("first")
        self.every = document.get("every")
        self.after = document.get("after")
        self.window_from = _moment(document.get("from"))
        self.window_until = _moment(document.get("until"))
        self._check_combination(where)
        self.rng = random.Random(document.get("seed", 0))
        self.matched = 0
        self.applied = 0

    def _check_combination(self, where: str) -> None:
        if self.drop and (self.status or self.truncate or self.malformed or self.retry_after):
            raise FaultSpecError(f"{where}: drop sends no response, so it cannot have a status, "
                                 "retry_after, truncate or malformed")
        if self.truncate and self.malformed:
            raise FaultSpecError(f"{where}: choose truncate or malformed, not both")
        if self.retry_after is not None and not self.status:
            raise FaultSpecError(f"{where}: retry_after needs a status")
        if self.apply and not (self.status or self.drop or self.truncate or self.malformed):
            raise FaultSpecError(f"{where}: apply needs a failure to follow the handler "
                                 "(status, drop, truncate or malformed)")
        if self.window_from and self.window_until and self.window_from >= self.window_until:
            raise FaultSpecError(f"{where}: from must be earlier than until")

    def targets(self, operation: str | None, method: str, path: str, account: str | None) -> bool:
        return ((self.operation is None or self.operation == operation)
                and (self.method is None or self.method == method)
                and (self.path is None or self.path.fullmatch(path) is not None)
                and (self.path_regex is None or self.path_regex.fullmatch(path) is not None)
                and (self.account is None or self.account == account))

    def fires(self, clock: VirtualClock, account: str | None) -> bool:
        """Count one targeted request and say whether the fault applies to it (lock held). A
        window is read on the requesting account's clock."""
        if self.window_from or self.window_until:
            now = clock.now_for(account)
            if (self.window_from and now < self.window_from) or (
                    self.window_until and now >= self.window_until):
                return False
        self.matched += 1
        if self.first is not None and self.matched > self.first:
            return False
        if self.after is not None and self.matched <= self.after:
            return False
        if self.every is not None and self.matched % self.every:
            return False
        if self.probability is not None and self.rng.random() >= self.probability:
            return False
        self.applied += 1
        return True

    def outcome(self) -> Outcome:
        """The fault for a request this rule fired on (lock held: the latency draw uses rng)."""
        low, high = self.latency
        latency = low if low == high else self.rng.uniform(low, high)
        return Outcome(self.id or HEADER_RULE_ID, self.status, self.retry_after, latency,
                       self.drop, self.truncate, self.malformed, self.apply)

    def view(self) -> dict:
        return {"id": self.id, **self.document, "matched": self.matched, "applied": self.applied}


def _pattern(compile_pattern, pattern: str | None, where: str):
    if pattern is None:
        return None
    try:
        return compile_pattern(pattern)
    except PatternError as exc:
        raise FaultSpecError(f"{where}: {exc}") from exc


def _latency(value, where: str, most: float = MAX_LATENCY_SECONDS) -> tuple[float, float]:
    if value is None:
        return 0.0, 0.0
    low, high = (value, value) if not isinstance(value, list) else value
    low, high = parse_duration(low), parse_duration(high)
    if low > high:
        raise FaultSpecError(f"{where}: latency: the range must go from low to high")
    if high > most:
        raise FaultSpecError(f"{where}: latency: at most {most:g}s")
    return low, high


def _moment(text: str | None) -> datetime | None:
    return parse_iso(text) if text is not None else None


def compile_rule(document, where: str, max_latency: float = MAX_LATENCY_SECONDS) -> Rule:
    """Check one rule document completely (schema, operation, regex, combinations)."""
    try:
        return Rule(document, where, max_latency)
    except ScenarioError as exc:
        raise FaultSpecError(str(exc)) from exc


class FaultRules:
    """The server's ordered rule set. One lock guards every rule's counters and generator;
    reading the rule tuple needs none (it is replaced, never changed in place)."""

    def __init__(self, clock: VirtualClock, seed: int = 0, max_rules: int = DEFAULT_MAX_RULES):
        self.clock = clock
        self.seed = seed
        self.max_rules = max_rules
        self._lock = threading.Lock()
        self._rules: tuple[Rule, ...] = ()
        self._header_rules: OrderedDict[tuple, Rule] = OrderedDict()
        self._header_rule_bytes = 0
        self._last_number = 0

    # -- changing the set -----------------------------------------------------------------

    def add(self, document) -> dict:
        rule = compile_rule(document, "fault rule")
        with self._lock:
            if len(self._rules) >= self.max_rules:
                raise LimitReached(f"Too many fault rules: the limit is {self.max_rules} "
                                   "(--max-fault-rules / FAKESHIFT_MAX_FAULT_RULES)")
            taken = {r.id for r in self._rules}
            if rule.id in taken:
                raise InvalidField("id", f"{rule.id!r} is already in use")
            self._assign_id(rule, taken)
            self._rules = (*self._rules, rule)
            return rule.view()

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            kept = tuple(rule for rule in self._rules if rule.id != rule_id)
            removed = len(kept) != len(self._rules)
            self._rules = kept
            return removed

    def clear(self, account: str | None = None) -> int:
        """Remove every rule and header-rule counter, or with `account` only the rules that
        target that account and the counters of its requests: a job sharing the server clears
        its own without touching another's."""
        with self._lock:
            if account is None:
                kept: tuple[Rule, ...] = ()
                self._forget_header_rules()
            else:
                kept = tuple(rule for rule in self._rules if rule.account != account)
                for key in [key for key in self._header_rules if key[0] == account]:
                    del self._header_rules[key]
                    self._header_rule_bytes -= _header_rule_cost(key)
            removed = len(self._rules) - len(kept)
            self._rules = kept
            return removed

    def export_rules(self) -> list[dict]:
        """The rule documents with their ids, enough for import_rules to rebuild the set."""
        return [{**rule.document, "id": rule.id} for rule in self._rules]

    @property
    def issued(self) -> int:
        """The last number an id f1, f2, ... was given; saved with the rules, so that after a
        restart (or a replay of the append log) the next rule gets the id it got before."""
        return self._last_number

    def import_rules(self, documents: list, issued: int = 0) -> None:
        """Replace every rule (counters start again at zero); all or nothing. Ids are numbered
        on from `issued`."""
        if len(documents) > self.max_rules:
            raise FaultSpecError(f"{len(documents)} fault rules: the limit is {self.max_rules}")
        rules = [compile_rule(parse_spec(document), f"faults[{position}]")
                 for position, document in enumerate(documents)]
        taken: set = set()
        for position, rule in enumerate(rules):
            if rule.id is not None:
                if rule.id in taken:
                    raise FaultSpecError(f"faults[{position}]: id {rule.id!r} is used twice")
                taken.add(rule.id)
        with self._lock:
            self._last_number = issued
            for rule in rules:
                self._assign_id(rule, taken)
                taken.add(rule.id)
            self._rules = tuple(rules)
            self._forget_header_rules()

    def _assign_id(self, rule: Rule, taken: set) -> None:
        """Name the rule f1, f2, ... unless it has an id, and seed its generator from the server
        seed and that id unless the rule has a seed of its own."""
        if rule.id is None:
            self._last_number += 1
            while f"f{self._last_number}" in taken:
                self._last_number += 1
            rule.id = f"f{self._last_number}"
        if "seed" not in rule.document:
            # A string seed is hashed with SHA-512: the same on every run and every machine.
            rule.rng = random.Random(f"{self.seed}:{rule.id}")

    def rules(self) -> list[dict]:
        with self._lock:
            return [rule.view() for rule in self._rules]

    @property
    def empty(self) -> bool:
        """No rule installed; safe without the lock, since the tuple is replaced whole."""
        return not self._rules

    def _compile_header(self, value: str, account: str | None, label: str) -> Rule:
        try:
            if len(value) > MAX_HEADER_LENGTH:
                raise FaultSpecError(f"at most {MAX_HEADER_LENGTH} characters")
            document = parse_spec(value)
            document.pop("id", None)
            rule = compile_rule(document, HEADER, MAX_HEADER_LATENCY_SECONDS)
        except FaultSpecError as exc:
            raise InvalidField(HEADER, str(exc)) from exc
        rule.id = label
        if "seed" not in document:
            rule.rng = random.Random(f"{self.seed}:{label}:{account}:{value}")
        return rule

    def _keep_header_rule(self, key: tuple, fresh: Rule) -> Rule:
        """Cache a compiled header rule, forgetting the least recently used past the budget.
        Another thread may have cached the same value meanwhile: its counters win."""
        with self._lock:
            rule = self._header_rules.setdefault(key, fresh)
            if rule is fresh:
                self._header_rule_bytes += _header_rule_cost(key)
            while self._header_rule_bytes > HEADER_RULE_CACHE_BYTES:
                oldest, _ = self._header_rules.popitem(last=False)
                self._header_rule_bytes -= _header_rule_cost(oldest)
            return rule

    def _forget_header_rules(self) -> None:
        self._header_rules.clear()
        self._header_rule_bytes = 0

    # -- deciding -------------------------------------------------------------------------

    def decide(self, operation: str | None, method: str, path: str,
               account: str | None) -> Outcome | None:
        rules = self._rules
        if not rules:
            return None
        with self._lock:
            for rule in rules:
                if (rule.targets(operation, method, path, account)
                        and rule.fires(self.clock, account)):
                    return rule.outcome()
        return None

    def decide_header(self, value: str, operation: str | None, method: str, path: str,
                      account: str | None, label: str = HEADER_RULE_ID,
                      counted_by: str | None = None) -> Outcome | None:
        """The fault a request asks for itself, in its header (or through a magic input, then
        with its own label, counted by the identifier). Counters (first=2, every=3, ...) are kept
        per account and header value, so a client sending the same header on every call gets
        "fail twice, then succeed"."""
        key = (account, value if counted_by is None else f"{label}:{counted_by}")
        with self._lock:
            rule = self._header_rules.get(key)
            if rule is not None:
                self._header_rules.move_to_end(key)
        if rule is None:
            rule = self._keep_header_rule(key, self._compile_header(value, account, label))
        with self._lock:
            if rule.targets(operation, method, path, account) and rule.fires(self.clock, account):
                return rule.outcome()
        return None


def _header_rule_cost(key: tuple) -> int:
    account, value = key
    return _HEADER_RULE_BASE_BYTES + _HEADER_RULE_BYTES_PER_CHARACTER * (
        len(value) + len(account or ""))


# ---- the HTTP side -----------------------------------------------------------------------------

def _magic_identifier(req) -> str | None:
    """A magic input in the request, found without parsing unless its raw bytes hold one."""
    raw = req.get_data(cache=True)
    query = req.query_string
    if magic.MARKER.search(raw) is None and magic.MARKER.search(query) is None:
        return None
    try:
        body = json_object(raw, req.mimetype, req.environ.get(PARSED_BODY_KEY)) if raw else {}
    except BlueshiftError:
        body = {}  # the handler refuses the body itself
    try:
        return magic.find_identifier(body, req.args)
    except magic.MagicInputError as exc:
        raise InvalidField("identifier", str(exc)) from exc


def decide_for(rules: FaultRules, req, operation: str, account: str | None,
               magic_inputs: bool) -> Outcome | None:
    """The fault for one Blueshift request: its own header is asked first, then a magic
    input, then the rules. The common case, no rules, no header and no magic input, asks
    nothing else."""
    header = req.environ.get(HEADER_ENVIRON_KEY)
    identifier = _magic_identifier(req) if magic_inputs else None
    if header is None and identifier is None and rules.empty:
        return None
    target = (operation, req.method, req.path, account)
    outcome = rules.decide_header(header, *target) if header is not None else None
    if outcome is None and identifier is not None:
        outcome = rules.decide_header(magic.directive(identifier), *target,
                                      label=magic.LABEL, counted_by=identifier)
    return outcome if outcome is not None else rules.decide(*target)


def injected(outcome: Outcome) -> Response | None:
    """After the outcome's latency: the fault's own answer, or None when the handler runs
    (`apply`, or a fault that only slows, malforms or cuts the answer)."""
    if outcome.latency:
        time.sleep(outcome.latency)
    if outcome.apply or not outcome.fails:
        return None
    status = outcome.status or 200
    return answer(STATUS_BODIES.get(status, api.OK), status)


def finished(response: Response, outcome: Outcome) -> Response:
    """The answer as the fault leaves it (before a transport fault, which the server carries
    out): lost to the fault's status when `apply`, cut in half when `malformed`, and marked."""
    if outcome.apply and outcome.status:
        # The handler ran and changed state; its answer is lost and the fault's goes out.
        response = answer(STATUS_BODIES[outcome.status], outcome.status)
    if outcome.malformed:
        data = response.get_data()
        response.set_data(data[:len(data) // 2])
    response.headers[HEADER] = outcome.label
    if outcome.retry_after is not None:
        response.headers["Retry-After"] = str(outcome.retry_after)
    return response


bp = Blueprint("faults", __name__, url_prefix="/_fakeshift")


def _rules() -> FaultRules:
    return current_app.extensions["fakeshift"].faults


@bp.get("/faults")
def list_faults():
    rules = _rules().rules()
    return answer({"count": len(rules), "rules": rules})


@bp.post("/faults")
def add_fault():
    """One rule: a JSON object, or the compact syntax as text/plain."""
    raw = request.get_data(cache=True)
    try:
        if request.mimetype == "text/plain":
            document = parse_spec(raw.decode("utf-8"))
        else:
            document = json_object(raw, request.mimetype)
        return answer(_rules().add(document))
    except UnicodeDecodeError as exc:
        raise InvalidField("body", "is not valid UTF-8") from exc
    except FaultSpecError as exc:
        raise InvalidField("fault", str(exc)) from exc


@bp.delete("/faults/<rule_id>")
def remove_fault(rule_id: str):
    if not _rules().remove(rule_id):
        raise NotFound(f"No fault rule has the id {rule_id!r}")
    return answer({"status": "ok", "removed": rule_id})


@bp.delete("/faults")
def clear_faults():
    """Every rule, or with ?account=K the rules that target K (and K's header-rule counters)."""
    only_fields(request.args, ("account",))
    return answer({"status": "ok", "removed": _rules().clear(request.args.get("account"))})
