"""A typed client for fakeshift's control plane (`/_fakeshift/...`), so tests don't hand-build
admin requests. Standard library only: it works wherever fakeshift's tests run, against an
in-process server, a `fakeshift serve` process or a container.

    control = FakeshiftClient("http://127.0.0.1:8080", admin_token=None)
    control.seed("my-key", profiles=[{"email": "ann@example.com", "count": 3}])
    control.advance(by="2h")                            # the server's clock: every account
    control.advance_account_clock("my-key", by="2h")    # this account's clock only
    control.account("my-key")["stats"]
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["FakeshiftClient", "FakeshiftError", "AccountClockSnapshot", "AccountReset",
           "Cleared", "ClockSnapshot", "JournalPage", "SeedCounts", "SeedResult",
           "ViolationsPage"]

JSON = dict[str, Any]


class ClockSnapshot(TypedDict):
    now: str
    frozen: bool
    offset_seconds: float


class AccountClockSnapshot(ClockSnapshot):
    """`frozen`: the account's time stands still (its own clock is frozen, or it follows a frozen
    server clock); `own`: it has a clock of its own (else it reads the server's)."""
    account: str
    own: bool
    offset_from_server_seconds: float


class AccountReset(TypedDict):
    status: str
    reset_to: str
    account: str


class Cleared(TypedDict):
    status: str
    cleared: int


class JournalPage(TypedDict):
    count: int
    entries: list[JSON]


class SeedCounts(TypedDict):
    profiles: int
    suppressed: int
    lists: int
    groups: int


class SeedResult(TypedDict):
    status: str
    created: int  # profiles, as counts["profiles"]
    uuids: list[str]  # of the new profiles, in order
    counts: SeedCounts


class ViolationsPage(TypedDict):
    count: int
    violations: list[JSON]


class FakeshiftError(Exception):
    """The control plane refused a call; `status` and `body` are what it answered."""

    def __init__(self, method: str, url: str, status: int, body: Any):
        super().__init__(f"{method} {url} answered {status}: {body}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body


class FakeshiftClient:
    """One emulator's control plane. `admin_token` is needed when the server sets one."""

    def __init__(self, base_url: str, admin_token: str | None = None, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"FakeshiftClient({self.base_url!r})"

    # ---- transport -----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, query: dict | None = None,
                content_type: str = "application/json", ok: tuple[int, ...] = (200,)) -> Any:
        """Send one control-plane call and return its decoded JSON answer.

        Raises FakeshiftError for any status not in `ok`."""
        url = f"{self.base_url}/_fakeshift{path}"
        present = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if present:
            url += "?" + urllib.parse.urlencode(present)
        headers = {"Accept": "application/json"}
        if self.admin_token is not None:
            headers["X-Fakeshift-Admin-Token"] = self.admin_token
        data = None
        if body is not None:
            data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        decoded = _decode(raw)
        if status not in ok:
            raise FakeshiftError(method, url, status, decoded)
        return decoded

    # ---- health --------------------------------------------------------------------------------

    def health(self) -> JSON:
        return self.request("GET", "/health")

    def is_ready(self) -> bool:
        try:
            return self.request("GET", "/ready", ok=(200, 503))["ready"] is True
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.05) -> float:
        """Wait until the server is ready (its scenario loaded); return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.is_ready():
                return time.monotonic() - started
            time.sleep(interval)
        raise TimeoutError(f"{self.base_url} was not ready after {timeout} s")

    # ---- reset and scenarios -------------------------------------------------------------------

    def reset(self, to: str = "scenario") -> JSON:
        """Back to the loaded scenario ("scenario") or to nothing ("empty"). Affects every
        account and the clock of the server."""
        return self.request("POST", "/reset", {"to": to})

    def load_scenario(self, scenario: str | Path | dict) -> JSON:
        """Replace all state with a scenario: a dict, YAML text, or a path to a YAML file."""
        if isinstance(scenario, dict):
            return self.request("PUT", "/scenario", scenario)
        text = Path(scenario).read_text("utf-8") if isinstance(scenario, Path) else scenario
        return self.request("PUT", "/scenario", text, content_type="application/yaml")

    def scenario(self) -> JSON:
        return self.request("GET", "/scenario")

    # ---- accounts ------------------------------------------------------------------------------

    def accounts(self) -> list[JSON]:
        return self.request("GET", "/accounts")["accounts"]

    def account(self, name: str) -> JSON:
        """The whole state of one account: settings, stats, profiles, suppressions, lists, groups."""
        return self.request("GET", f"/accounts/{_segment(name)}")

    def drop_account(self, name: str) -> JSON:
        """Drop the account, its contract violations and its own clock."""
        return self.request("DELETE", f"/accounts/{_segment(name)}")

    def reset_account(self, name: str, to: str = "scenario") -> AccountReset:
        """One account back to what the loaded scenario holds for it ("scenario") or to nothing
        ("empty"), with its own clock, journal entries, fault rules targeting it, rate-limit
        buckets and contract violations cleared. Other accounts are not touched."""
        return self.request("POST", f"/accounts/{_segment(name)}/reset", {"to": to})

    def seed(self, account: str, *, profiles: list[JSON] | None = None,
             generate: list[JSON] | None = None, suppressed: list[JSON] | None = None,
             lists: list[JSON] | None = None, groups: list[JSON] | None = None,
             deletion_delay: str | float | None = None) -> SeedResult:
        """Add data to an account, in the format of one `accounts[]` entry of a scenario file.
        Returns how many of each kind were created (`counts`), and the new profiles' `uuids`."""
        fragment = {"profiles": profiles, "generate": generate, "suppressed": suppressed,
                    "lists": lists, "groups": groups, "deletion_delay": deletion_delay}
        return self.request("POST", f"/accounts/{_segment(account)}/seed",
                            {k: v for k, v in fragment.items() if v is not None})

    def set_account_deletion_delay(self, account: str, delay: str | float | None) -> JSON:
        """Per-account delay from delete/forget to purge; None goes back to the server's."""
        return self.request("PUT", f"/accounts/{_segment(account)}/settings",
                            {"deletion_delay": delay})

    def settings(self) -> JSON:
        return self.request("GET", "/settings")

    def update_settings(self, *, deletion_delay: str | float | None = None,
                        group_delete_users_default: bool | None = None) -> JSON:
        changes = {"deletion_delay": deletion_delay,
                   "group_delete_users_default": group_delete_users_default}
        return self.request("PUT", "/settings", {k: v for k, v in changes.items() if v is not None})

    # ---- the virtual clock ---------------------------------------------------------------------

    def clock(self) -> ClockSnapshot:
        return self.request("GET", "/clock")

    def advance(self, seconds: float | None = None, *, by: str | None = None) -> ClockSnapshot:
        """Move the clock forward: `advance(90)` or `advance(by="2h")`."""
        if (seconds is None) == (by is None):
            raise ValueError("give exactly one of seconds or by")
        return self.request("POST", "/clock/advance",
                            {"seconds": seconds} if by is None else {"by": by})

    def freeze(self, at: str | None = None) -> ClockSnapshot:
        """Stop the clock, now or at an ISO 8601 time."""
        return self.request("POST", "/clock/freeze", {} if at is None else {"at": at})

    def unfreeze(self) -> ClockSnapshot:
        return self.request("POST", "/clock/unfreeze", {})

    def set_clock(self, now: str) -> ClockSnapshot:
        return self.request("POST", "/clock/set", {"now": now})

    # ---- one account's own clock (the server clock plus its offset, or its frozen moment) -----

    def account_clock(self, account: str) -> AccountClockSnapshot:
        return self.request("GET", f"/accounts/{_segment(account)}/clock")

    def advance_account_clock(self, account: str, seconds: float | None = None, *,
                              by: str | None = None) -> AccountClockSnapshot:
        """Move only this account's time forward: `advance_account_clock("k", by="2h")`."""
        if (seconds is None) == (by is None):
            raise ValueError("give exactly one of seconds or by")
        return self.request("POST", f"/accounts/{_segment(account)}/clock/advance",
                            {"seconds": seconds} if by is None else {"by": by})

    def freeze_account_clock(self, account: str, at: str | None = None) -> AccountClockSnapshot:
        """Stop this account's time, now or at an ISO 8601 time; the server clock's moves no
        longer reach it until it is unfrozen."""
        return self.request("POST", f"/accounts/{_segment(account)}/clock/freeze",
                            {} if at is None else {"at": at})

    def unfreeze_account_clock(self, account: str) -> AccountClockSnapshot:
        return self.request("POST", f"/accounts/{_segment(account)}/clock/unfreeze", {})

    def set_account_clock(self, account: str, now: str) -> AccountClockSnapshot:
        return self.request("POST", f"/accounts/{_segment(account)}/clock/set", {"now": now})

    def reset_account_clock(self, account: str) -> AccountClockSnapshot:
        """The account follows the server clock again."""
        return self.request("DELETE", f"/accounts/{_segment(account)}/clock")

    # ---- faults and rate limits ----------------------------------------------------------------

    def faults(self) -> Any:
        return self.request("GET", "/faults")

    def add_fault(self, rule: JSON) -> JSON:
        """Add one fault rule; the answer is the rule with its "id"."""
        return self.request("POST", "/faults", rule)

    def remove_fault(self, rule_id: str | int) -> Any:
        return self.request("DELETE", f"/faults/{_segment(str(rule_id))}")

    def clear_faults(self, account: str | None = None) -> Any:
        """Every rule, or only the rules that target `account` (and its header-rule counters)."""
        return self.request("DELETE", "/faults", query={"account": account})

    def rate_limits(self) -> Any:
        return self.request("GET", "/rate-limits")

    def set_rate_limits(self, limits: JSON) -> Any:
        return self.request("PUT", "/rate-limits", limits)

    def clear_rate_limit_buckets(self, account: str | None = None) -> Cleared:
        """Empty every bucket, or only `account`'s; the limits stay."""
        return self.request("DELETE", "/rate-limits/buckets", query={"account": account})

    # ---- journal and contract violations -------------------------------------------------------

    def journal(self, *, account: str | None = None, method: str | None = None,
                path: str | None = None, status: int | None = None, since: str | None = None,
                until: str | None = None, limit: int | None = None) -> JournalPage:
        """Requests the server has seen, newest kept, filtered."""
        return self.request("GET", "/journal", query={
            "account": account, "method": method, "path": path, "status": status,
            "since": since, "until": until, "limit": limit})

    def clear_journal(self, account: str | None = None) -> Cleared:
        """Every entry, or only `account`'s."""
        return self.request("DELETE", "/journal", query={"account": account})

    def violations(self, account: str | None = None) -> ViolationsPage:
        """Where clients broke the Blueshift contract (all accounts when `account` is None)."""
        return self.request("GET", "/violations", query={"account": account})

    def clear_violations(self, account: str | None = None) -> Cleared:
        return self.request("DELETE", "/violations", query={"account": account})


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _query_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
