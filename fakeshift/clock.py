"""The virtual clock: real time by default, frozen, set or advanced on demand; one for the
server, and optionally one per account on top of it.

Everything that needs "now" (timestamps, deletion due times, fault windows, rate limits) asks this
clock, so a test can "wait two hours" in a millisecond. What belongs to one account asks
`now_for(account)`: an account given a clock of its own (`account(name)`, an `AccountClock`) runs
at the server clock plus its own offset, or stands at its own frozen moment, so jobs sharing one
server move only their own time.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from .errors import InvalidField


# Far enough inside datetime's limits (years 1 and 9999) that a due time or a fault window
# computed from any moment in range, plus the longest duration accepted, still fits.
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)
_NO_OFFSET = timedelta(0)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and a trailing Z, as Blueshift writes timestamps."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Accepts what `iso` writes and any ISO 8601 form with an offset; naive times are UTC.
    Moments outside EARLIEST..LATEST are refused with ValueError."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError as exc:
        raise ValueError(f"{text!r} is out of range") from exc
    return _in_range(moment)


def _in_range(moment: datetime) -> datetime:
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"{iso(moment)} is outside the supported range "
                         f"({EARLIEST.year} to {LATEST.year})")
    return moment


def _checked(moment: datetime, whose: str = "") -> datetime:
    try:
        return _in_range(moment)
    except ValueError as exc:
        raise InvalidField("clock", f"{whose}{exc}") from exc


def _shifted(moment: datetime, step: timedelta, whose: str = "") -> datetime:
    """moment + step, refused like _checked when it leaves the range. An account's offset may
    span the whole range, so the sum can pass datetime's own limit before _checked sees it."""
    try:
        return _checked(moment + step, whose)
    except OverflowError as exc:
        raise InvalidField("clock", f"{whose}past the year 9999, outside the supported range "
                                    f"({EARLIEST.year} to {LATEST.year})") from exc


# An account's own clock: (offset from the server clock, frozen moment or None).
_Own = tuple[timedelta, "datetime | None"]


class VirtualClock:
    """Real time shifted by an offset, or frozen at one moment. Safe to share between threads.

    Also holds the accounts' own clocks (see AccountClock), under the same lock."""

    def __init__(self, real_now=utc_now):
        self._real_now = real_now
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen_at: datetime | None = None
        # Replaced whole under the lock, never changed in place: now_for reads it without the
        # lock, and while no account has a clock of its own that read is all it adds to now().
        self._accounts: dict[str, _Own] = {}

    def _now_locked(self) -> datetime:
        if self._frozen_at is not None:
            return self._frozen_at
        return self._real_now() + self._offset

    def now(self) -> datetime:
        with self._lock:
            return self._now_locked()

    def now_for(self, account: str | None) -> datetime:
        """The time of one account: the server's, unless the account has a clock of its own."""
        accounts = self._accounts
        own = accounts.get(account) if accounts else None
        if own is None:
            return self.now()
        offset, frozen_at = own
        return frozen_at if frozen_at is not None else self.now() + offset

    def account(self, name: str) -> "AccountClock":
        return AccountClock(self, name)

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def _check_accounts(self, moment: datetime) -> None:
        """Refuse a server moment that would carry an account running on an offset out of
        range (lock held)."""
        for name, (offset, frozen_at) in self._accounts.items():
            if frozen_at is None:
                _shifted(moment, offset, f"account {name!r}: ")

    def freeze(self, at: datetime | None = None) -> datetime:
        if at is not None:
            _checked(at)
        with self._lock:
            moment = at or self._now_locked()
            self._check_accounts(moment)
            self._frozen_at = moment
            return moment

    def unfreeze(self) -> datetime:
        """Time runs again from the frozen moment, so nothing jumps when a test lets go."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - self._real_now()
                self._frozen_at = None
            return self._real_now() + self._offset

    def set(self, moment: datetime) -> datetime:
        _checked(moment)
        with self._lock:
            self._check_accounts(moment)
            if self._frozen_at is not None:
                self._frozen_at = moment
            else:
                self._offset = moment - self._real_now()
            return moment

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            step = timedelta(seconds=seconds)
            moment = _checked(self._now_locked() + step)
            self._check_accounts(moment)
            if self._frozen_at is not None:
                self._frozen_at = moment
                return moment
            self._offset += step
            return self._real_now() + self._offset

    def reset(self) -> None:
        """Back to real time, and every account back to the server clock."""
        with self._lock:
            self._offset = timedelta(0)
            self._frozen_at = None
            self._accounts = {}

    def snapshot(self) -> dict:
        with self._lock:
            now = self._now_locked()
            return {
                "now": iso(now),
                "frozen": self._frozen_at is not None,
                "offset_seconds": round((now - self._real_now()).total_seconds(), 6),
            }

    # ---- the accounts' own clocks (AccountClock is their interface) ---------------------------

    def _change_account(self, name: str, change) -> datetime:
        """Replace one account's own clock with change(server now, own clock or None), which
        returns the new own clock (None: the account follows the server clock again); returns
        the account's time afterwards."""
        with self._lock:
            server_now = self._now_locked()
            own = change(server_now, self._accounts.get(name))
            accounts = dict(self._accounts)
            if own is None:
                accounts.pop(name, None)
            else:
                accounts[name] = own
            self._accounts = accounts
            if own is None:
                return server_now
            offset, frozen_at = own
            return frozen_at if frozen_at is not None else server_now + offset

    def account_clocks(self) -> dict[str, dict]:
        """The accounts' own clocks as plain data, for the state file."""
        return {name: {"offset_seconds": offset.total_seconds(),
                       "frozen_at": iso(frozen_at) if frozen_at is not None else None}
                for name, (offset, frozen_at) in self._accounts.items()}

    def restore_account_clocks(self, saved: dict[str, dict]) -> None:
        """Replace the accounts' own clocks with ones written by account_clocks; ValueError (or
        OverflowError) for a moment or an offset out of range, the clocks left as they were."""
        accounts = {}
        for name, clock in saved.items():
            frozen_at = clock["frozen_at"]
            accounts[name] = (timedelta(seconds=clock["offset_seconds"]),
                              parse_iso(frozen_at) if frozen_at is not None else None)
        with self._lock:
            previous, self._accounts = self._accounts, accounts
            try:
                self._check_accounts(self._now_locked())
            except InvalidField as exc:
                self._accounts = previous
                raise ValueError(exc.message) from exc


class AccountClock:
    """One account's clock: the server clock plus an offset of its own, or a frozen moment of
    its own. An account never given one reads the server clock unchanged; the first advance,
    set or freeze gives it one, and reset() lets it follow the server again. The changing calls
    and the snapshot of VirtualClock, so the control plane drives both alike; its time is read
    with VirtualClock.now_for(name).

    A frozen account clock stands still whatever the server clock does; one running on an
    offset moves with every advance or set of the server clock. Only a handle: the state is kept
    by the server clock, under its lock."""

    def __init__(self, server: VirtualClock, name: str):
        self._server = server
        self.name = name

    @property
    def _whose(self) -> str:
        return f"account {self.name!r}: "

    def freeze(self, at: datetime | None = None) -> datetime:
        if at is not None:
            _checked(at, self._whose)

        def frozen(server_now: datetime, own: _Own | None) -> _Own:
            offset, frozen_at = own or (_NO_OFFSET, None)
            return offset, at or frozen_at or _shifted(server_now, offset, self._whose)
        return self._server._change_account(self.name, frozen)

    def unfreeze(self) -> datetime:
        """Runs again from the frozen moment, as an offset from the server clock."""
        def running(server_now: datetime, own: _Own | None) -> _Own | None:
            if own is None or own[1] is None:
                return own
            return own[1] - server_now, None
        return self._server._change_account(self.name, running)

    def set(self, moment: datetime) -> datetime:
        _checked(moment, self._whose)

        def moved(server_now: datetime, own: _Own | None) -> _Own:
            if own is not None and own[1] is not None:
                return own[0], moment
            return moment - server_now, None
        return self._server._change_account(self.name, moved)

    def advance(self, seconds: float) -> datetime:
        step = timedelta(seconds=seconds)

        def advanced(server_now: datetime, own: _Own | None) -> _Own:
            offset, frozen_at = own or (_NO_OFFSET, None)
            if frozen_at is not None:
                return offset, _shifted(frozen_at, step, self._whose)
            _shifted(server_now, offset + step, self._whose)
            return offset + step, None
        return self._server._change_account(self.name, advanced)

    def reset(self) -> None:
        """Follow the server clock again."""
        self._server._change_account(self.name, lambda server_now, own: None)

    def snapshot(self) -> dict:
        """The server clock's snapshot fields, for this account: `frozen` says whether its time
        stands still (its own clock is frozen, or it follows a frozen server clock); `own`
        whether it has a clock of its own; `offset_from_server_seconds` how far it is from the
        server clock."""
        server = self._server
        with server._lock:
            server_now = server._now_locked()
            real_now = server._real_now()
            offset, frozen_at = server._accounts.get(self.name) or (_NO_OFFSET, None)
            own = self.name in server._accounts
            now = frozen_at if frozen_at is not None else server_now + offset
            return {
                "account": self.name,
                "now": iso(now),
                "frozen": frozen_at is not None or server._frozen_at is not None,
                "offset_seconds": round((now - real_now).total_seconds(), 6),
                "own": own,
                "offset_from_server_seconds": round((now - server_now).total_seconds(), 6),
            }
