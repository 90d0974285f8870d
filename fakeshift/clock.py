"""One virtual clock per server: real time by default, frozen, set or advanced on demand.

Everything that needs "now" (timestamps, deletion due times, fault windows, rate limits) asks this
clock, so a test can "wait two hours" in a millisecond.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from .errors import InvalidField


# Far enough inside datetime's limits (years 1 and 9999) that a due time or a fault window
# computed from any moment in range, plus the longest duration accepted, still fits.
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


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


def _checked(moment: datetime) -> datetime:
    try:
        return _in_range(moment)
    except ValueError as exc:
        raise InvalidField("clock", str(exc)) from exc


class VirtualClock:
    """Real time shifted by an offset, or frozen at one moment. Safe to share between threads."""

    def __init__(self, real_now=utc_now):
        self._real_now = real_now
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._frozen_at: datetime | None = None

    def now(self) -> datetime:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return self._real_now() + self._offset

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def freeze(self, at: datetime | None = None) -> datetime:
        if at is not None:
            _checked(at)
        with self._lock:
            self._frozen_at = at or (self._frozen_at or self._real_now() + self._offset)
            return self._frozen_at

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
            if self._frozen_at is not None:
                self._frozen_at = moment
            else:
                self._offset = moment - self._real_now()
            return moment

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            step = timedelta(seconds=seconds)
            if self._frozen_at is not None:
                self._frozen_at = _checked(self._frozen_at + step)
                return self._frozen_at
            _checked(self._real_now() + self._offset + step)
            self._offset += step
            return self._real_now() + self._offset

    def reset(self) -> None:
        with self._lock:
            self._offset = timedelta(0)
            self._frozen_at = None

    def snapshot(self) -> dict:
        with self._lock:
            now = self._frozen_at if self._frozen_at is not None else self._real_now() + self._offset
            return {
                "now": iso(now),
                "frozen": self._frozen_at is not None,
                "offset_seconds": round((now - self._real_now()).total_seconds(), 6),
            }
