"""State that survives a restart: `fakeshift serve --state-file PATH`.

The file is one JSON document, versioned by its "format" and "version" fields. It holds every
account (profiles with pending deletions and their due times, suppression lists, custom lists,
groups, recorded events), the server settings changed through the control plane, the virtual
clock (offset, or the frozen moment) and the accounts' own clocks, the fault rules and the
rate-limit configuration. It is written atomically: a temporary file in the same directory,
fsync, os.replace, then an fsync of the directory, so a crash at any moment leaves either the
previous complete file or the new one, never a mixture.
While a server runs it holds an exclusive lock on `<file>.lock`, so two servers never share one
file.

The reset target is saved when it was loaded through the control plane (PUT /_fakeshift/scenario);
otherwise --scenario is read again at start. Not saved: the request journal and contract
violations (diagnostics of the previous run), rate-limit buckets and fault-rule counters (they
start again from zero).

With --durability aof (appendlog.py) each save is also a compaction of the append log: the
snapshot names the log generation that follows it ("log_generation").
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import gc
import json
import logging
import operator
import os
import tempfile
import threading
from importlib import resources
from pathlib import Path

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .clock import iso, parse_iso, utc_now
from .appendlog import AppendLog, NextLog
from .errors import BlueshiftError
from .models import Profile
from .scenario import Scenario, ScenarioError

FORMAT = "fakeshift-state"
VERSION = 1

log = logging.getLogger("fakeshift")

# The whole document is checked before the server listens: a field of the wrong type anywhere
# would otherwise load and then fail every request that touches it. jsonschema-rs gives the
# verdict (~1 s per million profiles); jsonschema explains a failure.
_SCHEMA = yaml.safe_load(
    resources.files("fakeshift").joinpath("schemas/state.schema.yaml").read_text()
)
_is_valid_state = jsonschema_rs.Draft202012Validator(_SCHEMA, validate_formats=False).is_valid
_explain_state = Draft202012Validator(_SCHEMA).iter_errors
# Only these settings are state; the limits come from the server's configuration at start.
_LIMITER_STATUS = ("enabled", "buckets")  # what RateLimiter.describe() adds to its configuration
_SAVED_SETTINGS = ("deletion_delay", "group_delete_users_default")


class StateFileError(ValueError):
    """A state file that cannot be loaded; the message is one line naming the file and why."""


# A profile's fields in __slots__ order; see _copy_account.
_profile_fields = operator.attrgetter(*Profile.__slots__)


def _copy_account(account) -> tuple:
    """What a save needs of `account`, copied while the store lock is held, cheaply: the account
    object with its own copies of the containers that change in place (suppressions, list and
    group members), and each profile as the tuple of its field values. That is enough because a
    profile's values are never changed in place: times and the pending deletion are immutable, and
    an update replaces the attributes dict rather than changing it (models.Account.identify)."""
    twin = copy.copy(account)
    twin.suppressed = dict(account.suppressed)
    twin.lists = {key: dataclasses.replace(custom_list, members=dict(custom_list.members))
                  for key, custom_list in account.lists.items()}
    twin.groups = {key: dataclasses.replace(group, user_uuids=dict(group.user_uuids))
                   for key, group in account.groups.items()}
    twin.objects = account.objects.copy()
    # Its records are replaced, never changed in place (models.Account.record_event, merge).
    twin.events = account.events.copy()
    return twin, list(map(_profile_fields, account.profiles.values()))


def _account_state(twin, profile_fields: list[tuple]) -> dict:
    """The account's to_state document, built from a copy (no lock needed)."""
    twin.profiles = {}
    for values in profile_fields:
        profile = Profile.__new__(Profile)
        for name, value in zip(Profile.__slots__, values):
            setattr(profile, name, value)
        twin.profiles[profile.uuid] = profile
    return twin.to_state()


def _reset_target(emulator) -> dict | None:
    """The scenario reset returns to, when the control plane loaded it (--scenario is read
    again at start): a reset replayed from the append log must go back to the same one."""
    scenario = emulator.scenario
    if scenario is None or scenario.source == emulator.config.scenario:
        return None
    return {"source": scenario.source, "document": scenario.document}


def snapshot(emulator, log: AppendLog | None = None, upcoming: NextLog | None = None,
             generation: int = 0) -> dict:
    """The whole saved state as plain data. The store lock is held only while the accounts,
    settings, clocks, fault rules and limits are copied (consistent with each other); the
    document is built from the copies afterwards, so requests wait for the copy (~0.5 us a
    profile), not for the build. With an append `log`, its records switch to `upcoming` at the
    moment of the copy; the document names that generation (else `generation`)."""
    store = emulator.store
    # A copy allocates one tuple per profile: the garbage collector would run full collections
    # over the whole store meanwhile, inside the lock (four times the copy's own cost).
    collecting = gc.isenabled()
    gc.disable()
    try:
        with store.exclusive():
            with log.time_held() if log is not None else contextlib.nullcontext():
                clock = emulator.clock.snapshot()
            account_clocks = emulator.clock.account_clocks()
            settings = {name: getattr(store.settings, name) for name in _SAVED_SETTINGS}
            copies = [_copy_account(account) for account in store.accounts()]
            # Under the lock too: a change made after the copy is replayed from the log on top
            # of this snapshot, so it must not be in it already.
            faults, fault_ids = emulator.faults.export_rules(), emulator.faults.issued
            limits = emulator.rate_limits.describe()
            reset_target = _reset_target(emulator)
            if log is not None:
                generation = log.switch(upcoming)
    finally:
        if collecting:
            gc.enable()
    frozen_at = clock["now"] if clock["frozen"] else None
    document = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": iso(utc_now()),
        "log_generation": generation,
        "clock": {"frozen_at": frozen_at, "offset_seconds": clock["offset_seconds"]},
        "account_clocks": account_clocks,
        "settings": settings,
        "accounts": [_account_state(twin, profiles) for twin, profiles in copies],
        "faults": faults,
        "fault_ids_issued": fault_ids,
        "rate_limits": {k: v for k, v in limits.items() if k not in _LIMITER_STATUS},
    }
    if reset_target is not None:
        document["scenario"] = reset_target
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


def save(emulator, path: str | os.PathLike, log: AppendLog | None = None,
         generation: int = 0) -> None:
    """Write the state to `path`. With an append `log`, compact it too: its records go to a new
    file from the moment the state is copied, and the older files go once the snapshot that
    holds their changes is on disk (until then a restart replays them)."""
    if log is None:
        write_atomically(path, snapshot(emulator, generation=generation))
        return
    upcoming = log.prepare_next()
    try:
        document = snapshot(emulator, log, upcoming)
    finally:
        log.after_switch(upcoming)
    write_atomically(path, document)
    log.retire(document["log_generation"])


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
    if not _is_valid_state(document):
        error = best_match(_explain_state(document))
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
            # Absent from files saved before accounts had clocks of their own.
            clock.restore_account_clocks(document.get("account_clocks", {}))
        # Absent from files saved before they were saved.
        emulator.faults.import_rules(document["faults"], document.get("fault_ids_issued", 0))
        emulator.rate_limits.configure(document["rate_limits"])
        if "scenario" in document:
            saved = document["scenario"]
            emulator.scenario = Scenario.from_document(saved["document"], saved["source"])
    except ScenarioError as exc:
        raise StateFileError(f"{source}: the saved reset scenario cannot be loaded: "
                             f"{exc}") from exc
    except BlueshiftError as exc:
        raise StateFileError(f"{source}: cannot restore the state: "
                             f"{exc.body.get('message', exc.body)}") from exc
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise StateFileError(f"{source}: damaged state file: {detail}") from exc


class StateFile:
    """The --state-file of a running server, prepared before it listens, each failure one line:
    an exclusive lock on the sidecar `<file>.lock` (held until the process exits; a second
    server on the same file refuses to start), temporary files a crash left behind removed, and
    a probe that the directory takes new files (a save writes one and renames it). The lock
    file itself stays: removing it could let a second server lock a file of its own."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        directory = self.path.parent
        if not directory.is_dir():
            problem = "is not a directory" if directory.exists() else "does not exist"
            raise StateFileError(f"{self.path}: the directory {directory} {problem}")
        try:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateFileError(f"{self.path}: cannot create the lock file {self.lock_path}: "
                                 f"{exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise StateFileError(f"{self.path}: in use by another fakeshift server (it holds "
                                 f"{self.lock_path})") from exc
        # Only now: a temporary file of a server still running would be its save in progress.
        self._remove_temporaries()
        try:
            handle, probe = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                             dir=directory)
        except OSError as exc:
            raise StateFileError(f"{self.path}: cannot write in {directory}: "
                                 f"{exc.strerror}") from exc
        os.close(handle)
        os.unlink(probe)

    def _remove_temporaries(self) -> None:
        # The names write_atomically gives its temporary files.
        prefix = f".{self.path.name}."
        for entry in self.path.parent.iterdir():
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)

    def read(self) -> dict | None:
        return read(self.path)


class PeriodicSaver:
    """Saves the state every `interval` seconds on a daemon thread (never if it is 0), and once
    more on stop.

    A failed periodic save is logged and retried at the next tick: losing the disk for a while
    must not take the emulator down with it."""

    def __init__(self, emulator, path: str | os.PathLike, interval: float,
                 log: AppendLog | None = None, generation: int = 0):
        self.emulator = emulator
        self.path = path
        self.interval = interval
        self.log = log
        # Snapshot mode names the log generation it loaded, so that a later start with
        # --durability aof knows where its log begins.
        self.generation = generation
        self._stop = threading.Event()
        self._save_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fakeshift-save", daemon=True)
        self.saves = 0

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.emulator.ready.is_set():
                self.save_now()

    def save_now(self) -> bool:
        # The periodic thread and the final save on stop must not write at the same time.
        with self._save_lock:
            try:
                save(self.emulator, self.path, self.log, self.generation)
            except (OSError, ValueError) as exc:
                log.error("could not save the state to %s: %s", self.path, exc)
                return False
            self.saves += 1
            return True

    def stop(self) -> bool:
        """Stop the periodic saves and write the final state; False if that save failed."""
        self._stop.set()
        # Never save before the start-up load finished: that would overwrite the saved state
        # with an empty or half-built one.
        if not self.emulator.ready.is_set():
            return True
        return self.save_now()
