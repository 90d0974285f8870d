"""Rate limits: a leaky bucket per account and operation, off unless configured.

Each accepted request pours one unit into its bucket, which drains at `rate` units per second of
the virtual clock; a request that would overflow `burst` gets Blueshift's 429
`{"message": "Rate limit exceeded"}` and pours nothing. With a frozen clock exactly `burst`
requests pass; advancing the clock by 1/rate seconds lets one more through. A bucket drains on
its account's clock, so advancing one account's clock refills only that account's buckets.
"""

from __future__ import annotations

import math
import threading

from flask import Blueprint, Response, current_app, request

from .clock import VirtualClock
from .errors import STATUS_BODIES, InvalidField
from .faults import HEADER, FaultSpecError, json_spec, operation_name, parse_pairs
from .http import answer
from .parsing import json_object, only_fields
from .scenario import ScenarioError, check_definition, definition_validator

RATE_LIMIT_LABEL = "rate-limit"
# Buckets are per account, and open-mode accounts are whatever keys clients send: past this many
# buckets, the ones that have drained empty are forgotten (they would start empty anyway).
BUCKETS_KEPT = 100_000
_EPSILON = 1e-9
_VALIDATOR = definition_validator("rate_limits")


def check_limits(document, where: str = "rate_limits") -> dict:
    """The rate-limit document, checked; operation names come back in full."""
    try:
        check_definition(_VALIDATOR, document, where)
    except ScenarioError as exc:
        raise FaultSpecError(str(exc)) from exc
    operations = {operation_name(name, f"{where}: operations"): limit
                  for name, limit in document.get("operations", {}).items()}
    return {**document, "operations": operations} if operations else dict(document)


def parse_limit_specs(specs) -> dict:
    """One rate-limit document from CLI specs, each `[OPERATION:]rate=R,burst=B[,retry_after]`
    (no operation: the default for all), or a JSON object."""
    document: dict = {}
    for spec in specs:
        if isinstance(spec, dict):
            document.update(spec)
            continue
        text = str(spec).strip()
        target, colon, rest = text.partition(":")
        if text.startswith("{"):
            document.update(check_limits(json_spec(text, "rate limits")))
        elif colon and "=" not in target:
            pairs = parse_pairs(rest)
            if "retry_after" in pairs:
                document["retry_after"] = pairs.pop("retry_after")
            document.setdefault("operations", {})[target.strip()] = pairs
        else:
            document.update(parse_pairs(text))
    return check_limits(document, "--rate-limit") if document else {}


class RateLimiter:
    """Safe to share between waitress's threads: one lock guards the buckets."""

    def __init__(self, clock: VirtualClock):
        self.clock = clock
        self._lock = threading.Lock()
        self._document: dict = {}
        self._default: tuple[float, int] | None = None
        self._per_operation: dict[str, tuple[float, int]] = {}
        self.retry_after = False
        self._buckets: dict[tuple, list[float]] = {}
        # Kept in step with the limits under the lock; every request reads it without.
        self.enabled = False

    def configure(self, document: dict) -> dict:
        """Replace the limits (an empty document turns them off); every bucket starts empty."""
        checked = check_limits(document)
        with self._lock:
            self._document = checked
            self._default = ((float(checked["rate"]), int(checked["burst"]))
                             if "rate" in checked else None)
            self._per_operation = {name: (float(limit["rate"]), int(limit["burst"]))
                                   for name, limit in checked.get("operations", {}).items()}
            self.retry_after = bool(checked.get("retry_after", False))
            self.enabled = self._default is not None or bool(self._per_operation)
            self._buckets.clear()
            return dict(checked)

    def describe(self) -> dict:
        with self._lock:
            return {**self._document, "enabled": self.enabled, "buckets": len(self._buckets)}

    def admit(self, account: str | None, operation: str | None) -> float | None:
        """None if the request may pass (and it is counted), else the seconds until it could."""
        limit = self._per_operation.get(operation, self._default)
        if limit is None:
            return None
        rate, burst = limit
        now = self.clock.now_for(account).timestamp()
        key = (account, operation)
        with self._lock:
            level, last = self._buckets.get(key, (0.0, now))
            # A clock set backwards drains nothing rather than filling the bucket.
            level = max(0.0, level - max(0.0, now - last) * rate)
            if level + 1 > burst + _EPSILON:
                self._buckets[key] = [level, now]
                return (level + 1 - burst) / rate
            self._buckets[key] = [level + 1, now]
            if len(self._buckets) > BUCKETS_KEPT:
                self._forget_drained(now)
            return None

    def clear(self, account: str | None = None) -> int:
        """Empty every bucket, or one account's; the limits stay. How many buckets went."""
        with self._lock:
            if account is None:
                emptied = len(self._buckets)
                self._buckets.clear()
                return emptied
            gone = [key for key in self._buckets if key[0] == account]
            for key in gone:
                del self._buckets[key]
            return len(gone)

    def _forget_drained(self, now: float) -> None:
        for key, (level, last) in list(self._buckets.items()):
            rate = self._per_operation.get(key[1], self._default or (1.0, 1))[0]
            if level - (now - last) * rate <= 0:
                del self._buckets[key]


def refusal(limiter: RateLimiter, account: str | None, operation: str) -> Response | None:
    """Blueshift's 429 when the request's bucket is full; None when it may pass (and is
    counted), or when no limits are configured, which asks nothing else."""
    if not limiter.enabled:
        return None
    wait = limiter.admit(account, operation)
    if wait is None:
        return None
    headers = {HEADER: RATE_LIMIT_LABEL}
    if limiter.retry_after:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return answer(STATUS_BODIES[429], 429, headers)


bp = Blueprint("rate_limits", __name__, url_prefix="/_fakeshift")


@bp.get("/rate-limits")
def get_rate_limits():
    return answer(current_app.extensions["fakeshift"].rate_limits.describe())


@bp.put("/rate-limits")
def put_rate_limits():
    """Replace the limits, e.g. {"rate": 5, "burst": 10} or {} for none."""
    document = json_object(request.get_data(cache=True), request.mimetype)
    limiter = current_app.extensions["fakeshift"].rate_limits
    try:
        limiter.configure(document)
    except FaultSpecError as exc:
        raise InvalidField("rate_limits", str(exc)) from exc
    return answer(limiter.describe())


@bp.delete("/rate-limits/buckets")
def clear_buckets():
    """Empty the buckets (the limits stay): every one, or with ?account=K only K's."""
    only_fields(request.args, ("account",))
    limiter = current_app.extensions["fakeshift"].rate_limits
    return answer({"status": "ok", "cleared": limiter.clear(request.args.get("account"))})
