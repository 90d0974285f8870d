"""State that survives a restart: `fakeshift serve --state-file PATH`.

The file is one JSON document, versioned by its "format" and "version" fields. It holds every
account (profiles with pending deletions and their due times, suppression lists, custom lists,
groups), the server settings changed through the control plane, the virtual clock (offset, or
the frozen moment), the fault rules and the rate-limit configuration. It is written atomically:
a temporary file in the same directory, fsync, os.replace, then an fsync of the directory, so a
crash at any moment leaves either the previous complete file or the new one, never a mixture.

Not saved: the request journal and contract violations (diagnostics of the previous run),
rate-limit buckets and fault-rule counters (they start again from zero), and the loaded scenario
(the reset target comes from --scenario at start).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from jsonschema import Draft202012Validator

from .clock import iso, parse_iso, utc_now
from .errors import BlueshiftError

FORMAT = "fakeshift-state"
VERSION = 1

log = logging.getLogger("fakeshift")

# The envelope is checked before the server listens; the accounts inside are checked while they
# are rebuilt, entry by entry, so a large file does not pay for a schema walk of every profile.
_ENVELOPE = Draft202012Validator({
    "type": "object",
    "required": ["format", "version", "clock", "settings", "accounts", "faults", "rate_limits"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"const": VERSION},
        "saved_at": {"type": "string"},
        "clock": {
            "type": "object", "required": ["frozen_at", "offset_seconds"],
            "properties": {"frozen_at": {"type": ["string", "null"]},
                           "offset_seconds": {"type": "number"}},
        },
        "settings": {
            "type": "object",
            "properties": {"deletion_delay": {"type": "number", "minimum": 0},
                           "group_delete_users_default": {"type": "boolean"}},
        },
        "accounts": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "faults": {"type": "array", "items": {"type": "object"}},
        "rate_limits": {"type": "object"},
    },
})
# Only these settings are state; the limits come from the server's configuration at start.
_LIMITER_STATUS = ("enabled", "buckets")  # what RateLimiter.describe() adds to its configuration
_SAVED_SETTINGS = ("deletion_delay", "group_delete_users_default")


class StateFileError(ValueError):
    """A state file that cannot be loaded; the message is one line naming the file and why."""


def snapshot(emulator) -> dict:
    """The whole saved state as plain data. The store lock is held while it is copied, so the
    accounts, settings and clock are consistent with each other."""
    store = emulator.store
    with store.exclusive():
        clock = emulator.clock.snapshot()
        frozen_at = clock["now"] if clock["frozen"] else None
        document = {
            "format": FORMAT,
            "version": VERSION,
            "saved_at": iso(utc_now()),
            "clock": {"frozen_at": frozen_at, "offset_seconds": clock["offset_seconds"]},
            "settings": {name: getattr(store.settings, name) for name in _SAVED_SETTINGS},
            "accounts": store.to_state(),
        }
    document["faults"] = emulator.faults.export_rules()
    limits = emulator.rate_limits.describe()
    document["rate_limits"] = {k: v for k, v in limits.items() if k not in _LIMITER_STATUS}
    return document


def write_atomically(path: str | os.PathLike, document: dict) -> None:
    path = Path(path)
    directory = path.parent
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file private (0600); a state file is no secret, and a container's
        # volume is often read by another user.
        os.fchmod(handle, 0o644)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out, separators=(",", ":"), allow_nan=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk, or a power cut could bring back the old name.
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def save(emulator, path: str | os.PathLike) -> None:
    write_atomically(path, snapshot(emulator))


def read(path: str | os.PathLike) -> dict | None:
    """The checked document in `path`, or None when the file does not exist yet (first start)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read the state file: {exc.strerror}") from exc
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateFileError(f"{path}: not a fakeshift state file (not valid JSON: {exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateFileError(f"{path}: not a fakeshift state file (no \"format\": \"{FORMAT}\")")
    if document.get("version") != VERSION:
        raise StateFileError(f"{path}: state file version {document.get('version')!r} is not "
                             f"supported (this fakeshift reads version {VERSION})")
    error = next(iter(sorted(_ENVELOPE.iter_errors(document), key=lambda e: e.path)), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise StateFileError(f"{path}: damaged state file at {where}: {error.message}")
    return document


def restore(emulator, document: dict, source: str) -> None:
    """Replace the emulator's state with the document's (after the scenario has been loaded)."""
    store = emulator.store
    try:
        with store.exclusive():
            store.restore(document["accounts"])
            for name in _SAVED_SETTINGS:
                if name in document["settings"]:
                    setattr(store.settings, name, document["settings"][name])
            clock = emulator.clock
            clock.reset()
            clock.advance(document["clock"]["offset_seconds"])
            if document["clock"]["frozen_at"] is not None:
                clock.freeze(parse_iso(document["clock"]["frozen_at"]))
        emulator.faults.import_rules(document["faults"])
        emulator.rate_limits.configure(document["rate_limits"])
    except BlueshiftError as exc:
        raise StateFileError(f"{source}: cannot restore the state: "
                             f"{exc.body.get('message', exc.body)}") from exc
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise StateFileError(f"{source}: damaged state file: {detail}") from exc


class PeriodicSaver:
    """Saves the state every `interval` seconds on a daemon thread, and once more on stop.

    A failed save is logged and retried at the next tick: losing the disk for a while must not
    take the emulator down with it."""

    def __init__(self, emulator, path: str | os.PathLike, interval: float):
        self.emulator = emulator
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._save_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fakeshift-save", daemon=True)
        self.saves = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.emulator.ready.is_set():
                self.save_now()

    def save_now(self) -> bool:
        # The periodic thread and the final save on stop must not write at the same time.
        with self._save_lock:
            try:
                save(self.emulator, self.path)
            except (OSError, ValueError) as exc:
                log.error("could not save the state to %s: %s", self.path, exc)
                return False
            self.saves += 1
            return True

    def stop(self) -> None:
        """Stop the periodic saves and write the final state."""
        self._stop.set()
        # Never save before the start-up load finished: that would overwrite the saved state
        # with an empty or half-built one.
        if self.emulator.ready.is_set():
            self.save_now()
