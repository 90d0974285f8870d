"""`fakeshift serve --durability aof`: an append-only log of every change since the last snapshot
of the --state-file, replayed at start; a crash then loses at most --fsync-interval of
acknowledged changes (none at all when only the process dies: the kernel has the bytes).

What a record is: one state-changing request (any method but GET, HEAD and OPTIONS that reaches
a view), as the view saw it: method, path, query string, Content-Type, body, the caller's
account, the real time it ran at and a seed. Replay runs the same view again, with the clock's
real time held at that moment and the uuid generator (ids.py) seeded with that seed, so it makes
exactly the change it made the first time: same uuids, same timestamps, same refusals. Logging
requests rather than their effects keeps the log independent of the domain: a new endpoint,
control call or domain rule is covered without a record type of its own.

For that, a logged view runs whole under the store lock (requests that change state are one at
a time), and its record is queued there, in that order. After the view, outside the lock, the
request writes the queued records to the file (os.writev: the kernel's buffer), with those of
other requests that are waiting (a group commit), and only then answers: no change is
acknowledged before its record is in the kernel. A write that fails answers 503, and every
later change is refused (503, nothing changed) until a snapshot holding the changes the log
missed is on disk. A thread of its own fdatasyncs the file every --fsync-interval, outside the
store lock.

Files: `<state>.aof.<generation>`, each starting with FILE_HEADER and then frames: the payload's
length, its bitwise complement (so a damaged length is told from a record cut short) and the
payload's CRC-32 (little-endian uint32 each), then the payload: the record's JSON header, a
newline, the body. The snapshot names the generation it is followed by (its "log_generation"):

- compaction (each periodic save): create and fsync the next file; under the store lock, copy
  the state and switch the records to the new file (fdatasync the old one, so no record of the
  new file can reach the disk before the old file's); outside it, write the snapshot naming the
  new generation (atomically), then remove the older files. A crash at any step leaves either
  the old snapshot with the old and new files, or the new snapshot with the new file (the older
  one being ignored and removed);
- at start: remove files older than the snapshot's generation, replay the others in order, and
  cut a torn last record (a crash in the middle of writing it) off the last file. Damage
  anywhere else (a bad CRC followed by more records, a missing generation, a foreign file) stops
  the server with one line.

Not logged (as with snapshots, not saved): the journal, contract violations, rate-limit buckets,
fault-rule counters, and what a --drill changes (it plays again from its start after a restart).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import logging
import os
import re
import struct
import sys
import threading
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from random import Random
from typing import Iterator, NamedTuple

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

from . import ids
from .auth import READ_METHODS, ApiKey
from .errors import BlueshiftError
from .http import answer

log = logging.getLogger("fakeshift")

FILE_HEADER = b"fakeshift-aof 1\n"
_FRAME = struct.Struct("<III")  # payload length, its complement, CRC-32 of the payload
_ALL_BITS = 0xFFFFFFFF
# A body that, with its record's header, would not fit a frame's 32-bit length; only a server
# started with --admin-max-body-bytes of 4g or more receives one.
_LARGEST_BODY = _ALL_BITS - (1 << 16)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_RECORD_FIELDS = {"t": int, "s": int, "m": str, "p": str, "q": str, "c": str}
# How much of a damaged file is read at a time to tell a zero-filled tail (what a crash may
# leave where the file system had extended the file) from records after the damage.
_SCAN_BYTES = 1 << 20
RESTORING = {"message": "Service Unavailable - the state is being restored from the append "
                        "log. Try again later."}


class AppendLogError(ValueError):
    """An append log that cannot be used; the message is one line naming the file and why."""


def log_path(state_path: Path, generation: int) -> Path:
    return state_path.with_name(f"{state_path.name}.aof.{generation}")


def existing_logs(state_path: Path) -> dict[int, Path]:
    """The append-log files next to `state_path`, by generation."""
    pattern = re.compile(re.escape(state_path.name) + r"\.aof\.(0|[1-9][0-9]{0,17})")
    found = {}
    for entry in state_path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match:
            found[int(match.group(1))] = entry
    return found


def holds_changes(path: Path) -> bool:
    return path.stat().st_size > len(FILE_HEADER)


def log_generation(document: dict | None) -> int:
    """The generation of the log that follows a snapshot; files saved before there were append
    logs (or in snapshot mode, before one was ever used) name none: 0."""
    return document.get("log_generation", 0) if document is not None else 0


def check_snapshot_mode(state_path: Path, document: dict | None) -> None:
    """In snapshot mode, refuse a state file whose append log holds changes the snapshot does
    not have (the server last ran with --durability aof and was not stopped cleanly); remove
    logs that hold none."""
    generation = log_generation(document)
    for number, path in sorted(existing_logs(state_path).items()):
        if number >= generation and holds_changes(path):
            raise AppendLogError(
                f"{state_path}: {path.name} holds changes that are not in the state file yet; "
                f"start with --durability aof to replay them (or remove {path} to drop them)")
        path.unlink()


class Record(NamedTuple):
    moment: datetime  # the real time the request ran at
    seed: int
    method: str
    path: str  # as WSGI has it (PATH_INFO)
    query: str
    content_type: str
    account: str | None  # the caller's account (Blueshift requests only)
    body: bytes


def encode(record: Record) -> list[bytes]:
    """The frame of `record`, in parts for os.writev (the body is not copied)."""
    # json.dumps with its default arguments: the encoder it caches (separators make a new one).
    header = json.dumps({"t": (record.moment - _EPOCH) // _MICROSECOND, "s": record.seed,
                         "m": record.method, "p": record.path, "q": record.query,
                         "c": record.content_type, "a": record.account}).encode() + b"\n"
    crc = zlib.crc32(record.body, zlib.crc32(header))
    length = len(header) + len(record.body)
    return [_FRAME.pack(length, length ^ _ALL_BITS, crc), header, record.body]


def _decode(payload: bytes) -> Record | None:
    """The record in a payload whose CRC matched, or None if it is no record (a bug or a
    foreign writer: a CRC does not match by accident)."""
    header, newline, body = payload.partition(b"\n")
    try:
        fields = json.loads(header)
    except (UnicodeDecodeError, ValueError):
        return None
    if (not newline or not isinstance(fields, dict)
            or any(type(fields.get(name)) is not kind for name, kind in _RECORD_FIELDS.items())
            or not isinstance(fields.get("a"), (str, type(None)))
            or not 0 <= fields["s"] < 1 << 64):
        return None
    try:
        moment = _EPOCH + fields["t"] * _MICROSECOND
    except OverflowError:
        return None
    return Record(moment, fields["s"], fields["m"], fields["p"], fields["q"], fields["c"],
                  fields["a"], body)


class LogFile:
    """One file's records, read frame by frame (never the whole file at once). After the
    records are read, `valid_length` is where the last whole record ends and `torn` how many
    bytes after it belong to a record a crash cut short."""

    def __init__(self, path: Path):
        self.path = path
        self.valid_length = 0
        self.torn = 0

    def records(self) -> Iterator[Record]:
        try:
            handle = open(self.path, "rb")
        except OSError as exc:
            raise AppendLogError(f"{self.path}: cannot read the append log: "
                                 f"{exc.strerror}") from exc
        with handle:
            size = os.fstat(handle.fileno()).st_size
            start = handle.read(len(FILE_HEADER))
            if start != FILE_HEADER:
                if not FILE_HEADER.startswith(start):
                    raise AppendLogError(f"{self.path}: not a fakeshift append log (it does not "
                                         f"start with {FILE_HEADER!r})")
                # Cut short while being created: a crash before its first record.
                self.torn = len(start)
                return
            position = self.valid_length = len(FILE_HEADER)
            while position < size:
                frame = handle.read(_FRAME.size)
                if len(frame) < _FRAME.size:
                    return self._torn_at(position, size)
                length, complement, crc = _FRAME.unpack(frame)
                if length ^ complement != _ALL_BITS or length == 0:
                    # A crash cuts bytes off, it does not change them; but a power cut may
                    # leave zeros where the file system had extended the file.
                    self._damaged_unless_zeros(handle, position, "a damaged record header")
                    return self._torn_at(position, size)
                end = position + _FRAME.size + length
                if end > size:
                    return self._torn_at(position, size)
                payload = handle.read(length)
                if zlib.crc32(payload) != crc:
                    if end < size:
                        self._damaged_unless_zeros(handle, end, "a record whose CRC does not "
                                                                "match, with more after it")
                    return self._torn_at(position, size)
                record = _decode(payload)
                if record is None:
                    raise AppendLogError(f"{self.path}: damaged append log at byte {position}: "
                                         f"a record that fakeshift did not write")
                yield record
                position = self.valid_length = end

    def _torn_at(self, position: int, size: int) -> None:
        self.valid_length = position
        self.torn = size - position

    def _damaged_unless_zeros(self, handle, offset: int, what: str) -> None:
        handle.seek(offset)
        while chunk := handle.read(_SCAN_BYTES):
            if chunk.count(0) != len(chunk):
                raise AppendLogError(f"{self.path}: damaged append log at byte "
                                     f"{self.valid_length}: {what}")


class _HeldRealTime:
    """Stands in for the clock's real time (VirtualClock._real_now): one thread can hold it
    still at a moment, so that a logged view, and its replay, read one and the same time
    however long it runs; every other thread reads the real time meanwhile."""

    def __init__(self, real_now):
        self.real_now = real_now
        self._held = threading.local()

    def __call__(self) -> datetime:
        moment = getattr(self._held, "moment", None)
        return self.real_now() if moment is None else moment

    def hold(self, moment: datetime | None) -> None:
        """Hold this thread's real time at `moment` (None: let it run)."""
        self._held.moment = moment


class NextLog:
    """The file the records go to after the next compaction, created before it."""

    def __init__(self, path: Path, generation: int):
        self.path = path
        self.generation = generation
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            os.write(self.fd, FILE_HEADER)
            os.fsync(self.fd)
            _fsync_directory(path.parent)
        except BaseException:
            os.close(self.fd)
            raise

    def discard(self) -> None:
        os.close(self.fd)


def _fsync_directory(directory: Path) -> None:
    # A new file's name must reach the disk too, or a power cut could lose the whole file.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_datasync = getattr(os, "fdatasync", os.fsync)
# Buffers one os.writev takes (Linux's IOV_MAX is 1024).
_IOV_MAX = 1024


class AppendLog:
    """The append log of one --state-file, checked when made (before the server listens)."""

    def __init__(self, state_path: str | os.PathLike, document: dict | None,
                 fsync_interval: float):
        self.state_path = Path(state_path)
        self.fsync_interval = fsync_interval
        self.base = log_generation(document)
        logs = existing_logs(self.state_path)
        self.needs_snapshot = document is None
        self._replay: list[Path] = []
        if document is None:
            # No snapshot yet: what is there can only be left by a first start that crashed
            # before writing its first snapshot, and holds nothing.
            for path in logs.values():
                if holds_changes(path):
                    raise AppendLogError(f"{self.state_path}: {path.name} holds changes but the "
                                         f"state file they follow does not exist")
            self._obsolete = list(logs.values())
            self.generation = self.base
        else:
            following = sorted(number for number in logs if number >= self.base)
            if following != list(range(self.base, self.base + len(following))):
                missing = min(set(range(self.base, following[-1])) - set(following))
                raise AppendLogError(f"{self.state_path}: the append log "
                                     f"{log_path(self.state_path, missing).name} is missing (the "
                                     f"state file is followed by generation {self.base})")
            self._obsolete = [logs[number] for number in logs if number < self.base]
            self._replay = [logs[number] for number in following]
            self.generation = following[-1] if following else self.base
        self._fd: int | None = None
        self._previous_fd: int | None = None  # the file before the last switch, until closed
        self._live = False
        self._views: dict = {}
        self._store = None
        self._time: _HeldRealTime | None = None
        self._seeds = Random().getrandbits
        # Records queued (in the order their changes were made, under the store lock) and not
        # yet written; each has a ticket, its place in that order.
        self._pending: list[list[bytes]] = []
        self._queued = 0  # the last ticket handed out
        self._pending_lock = threading.Lock()
        # Held while queued records are written; guards what follows. Taken after the store
        # lock (switch), never the other way round.
        self._write_lock = threading.Lock()
        self._written = 0  # every ticket up to this one is in the file
        self._size = 0  # of the current file
        self._appended = 0  # records written, for the fsync thread
        # Set when a write failed: the log then misses changes that were made, so every later
        # change is refused until a snapshot holding them is on disk (retire).
        self._broken: OSError | None = None
        self._synced = 0
        # Held while a file descriptor is fsynced or closed, never by a request.
        self._io_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sync_periodically, name="fakeshift-fsync",
                                        daemon=True)

    # ---- recording -----------------------------------------------------------------------

    def install(self, app: Flask) -> None:
        """Log every state-changing request of `app` from now on (its views are all
        registered): each view is wrapped, and the clock's real time can be held."""
        emulator = app.extensions["fakeshift"]
        self._store = emulator.store
        clock = emulator.clock
        # The clock reads real time through this attribute only (clock.VirtualClock).
        self._time = _HeldRealTime(clock._real_now)
        clock._real_now = self._time
        for endpoint, view in list(app.view_functions.items()):
            self._views[endpoint] = view
            app.view_functions[endpoint] = self._logged(view)

    def _logged(self, view):
        @functools.wraps(view)
        def logged(**view_args):
            req = request._get_current_object()
            if req.method in READ_METHODS:
                return view(**view_args)
            if not self._live:
                return answer(RESTORING, 503, {"Retry-After": "1"})
            if self._broken is not None:
                return self._refused(self._broken, made=False)
            body = req.get_data(cache=True)
            if len(body) > _LARGEST_BODY:
                return answer({"message": f"Request body too large: the append log takes "
                                          f"bodies of at most {_LARGEST_BODY} bytes"}, 413)
            api_key = g.get("api_key")
            environ = req.environ
            with self._store.exclusive():
                record = Record(self._time.real_now(), self._seeds(63), req.method,
                                environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
                                environ.get("CONTENT_TYPE", ""),
                                api_key.account if api_key is not None else None, body)
                with self._pending_lock:
                    self._pending.append(encode(record))
                    self._queued += 1
                    ticket = self._queued
                # try/finally rather than a context manager: this runs on every change.
                self._time.hold(record.moment)
                try:
                    ids.seed(record.seed)
                    response = view(**view_args)
                finally:
                    self._time.hold(None)
            # Written outside the store lock (a write lets other threads run, which would then
            # only queue up behind the lock), and before the answer leaves.
            try:
                self._flush(ticket)
            except OSError as exc:
                return self._refused(exc, made=True)
            return response
        return logged

    def _flush(self, ticket: int) -> None:
        """Return once the record with `ticket` is in the file (written by this thread along
        with every record queued before it, or by another thread that got there first)."""
        with self._write_lock:
            if self._written >= ticket:
                return
            if self._broken is not None:
                raise self._broken
            with self._pending_lock:
                batch, self._pending = self._pending, []
                last = self._queued
            try:
                self._write(batch)
            except OSError as exc:
                if self._broken is None:
                    log.error("cannot write the append log %s: %s; changes are refused (503) "
                              "until the next save succeeds", self._current_path(),
                              exc.strerror or exc)
                self._broken = exc
                raise
            self._written = last

    def _write(self, batch: list[list[bytes]]) -> None:
        """Write the frames of `batch` at the end of the current file, all or none of them
        (write lock held)."""
        buffers = [part for frame in batch for part in frame]
        start = self._size
        try:
            for offset in range(0, len(buffers), _IOV_MAX):
                chunk = buffers[offset:offset + _IOV_MAX]
                size = sum(map(len, chunk))
                if os.writev(self._fd, chunk) != size:
                    # Only a full disk writes part of it.
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                self._size += size
        except OSError:
            # No record cut short may stay before the ones written next. If even this fails,
            # the next start finds the damage and says so.
            self._size = start
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise
        self._appended += len(batch)

    @staticmethod
    def _refused(exc: OSError, made: bool):
        what = ("the change was made but could not be logged, so a restart may lose it"
                if made else "nothing was changed")
        return answer({"message": f"Service Unavailable - the append log cannot be written "
                                  f"({exc.strerror or exc}): {what}. Try again later."}, 503,
                      {"Retry-After": "1"})

    def _current_path(self) -> Path:
        return log_path(self.state_path, self.generation)

    # ---- start ---------------------------------------------------------------------------

    def replay(self, app: Flask) -> int:
        """Replay the logs that follow the snapshot (the store lock held), cut a torn last
        record off, and open the last log for appending. Returns how many records ran."""
        for path in self._obsolete:
            path.unlink(missing_ok=True)
        replayed = failed = 0
        with self._store.exclusive():
            for position, path in enumerate(self._replay):
                log_file = LogFile(path)
                for record in log_file.records():
                    failed += not self._run(app, record)
                    replayed += 1
                later = [later for later in self._replay[position + 1:] if holds_changes(later)]
                if log_file.torn and later:
                    raise AppendLogError(f"{path}: damaged append log at byte "
                                         f"{log_file.valid_length}: a record cut short, and "
                                         f"{later[0].name} holds changes after it")
                if log_file.valid_length < len(FILE_HEADER):
                    # Created but not yet headed (a crash while the previous save made it):
                    # records appended now must follow a header.
                    self._cut(path, 0)
                elif log_file.torn:
                    log.warning("%s: ignored a torn last record (%d bytes from byte %d): a "
                                "crash cut it short", path, log_file.torn,
                                log_file.valid_length)
                    self._cut(path, log_file.valid_length)
            if self._replay:
                self._fd = os.open(self._replay[-1], os.O_WRONLY | os.O_APPEND)
            else:
                self._fd = NextLog(self._current_path(), self.generation).fd
            self._size = os.fstat(self._fd).st_size
        if failed:
            log.warning("%d of %d replayed changes failed unexpectedly (as they did when they "
                        "were made, or the state would differ: see above)", failed, replayed)
        return replayed

    @staticmethod
    def _cut(path: Path, length: int) -> None:
        if length < len(FILE_HEADER):
            with open(path, "wb") as handle:
                handle.write(FILE_HEADER)
            return
        os.truncate(path, length)

    def _run(self, app: Flask, record: Record) -> bool:
        """Run one record's view as it ran (time held, uuids seeded); False if it raised
        something no request answers with."""
        environ = {
            "REQUEST_METHOD": record.method, "PATH_INFO": record.path, "SCRIPT_NAME": "",
            "QUERY_STRING": record.query, "CONTENT_TYPE": record.content_type,
            "CONTENT_LENGTH": str(len(record.body)), "wsgi.input": io.BytesIO(record.body),
            "SERVER_NAME": "replay", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        }
        with app.request_context(environ):
            req = request._get_current_object()
            if req.routing_exception is not None:
                log.error("append log: no route for %s %s any more", record.method, record.path)
                return False
            if record.account is not None:
                g.api_key = ApiKey(record.account, "write", record.account)
            view = self._views[req.url_rule.endpoint]
            self._time.hold(record.moment)
            ids.seed(record.seed)
            try:
                view(**req.view_args)
            except (BlueshiftError, HTTPException):
                pass  # refused then as now: refusals change nothing
            except Exception:
                log.exception("append log: replaying %s %s failed", record.method, record.path)
                return False
            finally:
                self._time.hold(None)
        return True

    def start(self) -> None:
        """Take requests that change state, and fsync every fsync_interval."""
        self._live = True
        self._thread.start()

    # ---- durability ----------------------------------------------------------------------

    def _sync_periodically(self) -> None:
        while not self._stop.wait(self.fsync_interval):
            self.sync()

    def sync(self) -> None:
        """fdatasync the current file if records were written since the last time."""
        with self._io_lock:
            # The count first: a record counted here is in the file read next, or in the one
            # before it, which switch() synced.
            appended = self._appended
            fd = self._fd
            if appended == self._synced or fd is None:
                return
            try:
                _datasync(fd)
            except OSError as exc:
                log.error("cannot fsync the append log %s: %s", self._current_path(),
                          exc.strerror or exc)
                return
            self._synced = appended

    # ---- compaction (persistence.save) ---------------------------------------------------

    def prepare_next(self) -> NextLog:
        """The next file, created and fsynced outside the store lock. The current file is
        fdatasynced here too, so that the one under the lock (switch) has little to write."""
        upcoming = NextLog(log_path(self.state_path, self.generation + 1), self.generation + 1)
        self.sync()
        return upcoming

    def switch(self, upcoming: NextLog) -> int:
        """Under the store lock, with the state being copied: records go to `upcoming` from now
        on. Returns its generation, the one the snapshot names."""
        with self._write_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                last = self._queued
            # The changes queued so far are in the copy: their records go to the old file, or
            # nowhere once it misses some (the snapshot then holds them all).
            if batch and self._broken is None:
                try:
                    self._write(batch)
                except OSError as exc:
                    self._broken = exc
            if self._broken is None:
                self._written = last
            previous = self._fd
            # Before any record of the new file can reach the disk: a torn record can then
            # only be the last one of the last file.
            _datasync(previous)
            self._previous_fd = previous
            self._fd, self._size, self.generation = (upcoming.fd, len(FILE_HEADER),
                                                     upcoming.generation)
        return upcoming.generation

    def after_switch(self, upcoming: NextLog) -> None:
        """After a compaction's copy: close the file switched away from, or `upcoming` if the
        copy failed before the switch. Not under the store lock: the fsync thread may be
        syncing the file right now."""
        with self._io_lock:
            if self._fd != upcoming.fd:
                upcoming.discard()
            elif self._previous_fd is not None:
                os.close(self._previous_fd)
                self._previous_fd = None

    @contextlib.contextmanager
    def time_held(self):
        """Real time held still while the clock is copied into a snapshot: its offset from
        real time is then exact, as a replay on top of it needs (two reads of real time would
        differ by microseconds)."""
        self._time.hold(self._time.real_now())
        try:
            yield
        finally:
            self._time.hold(None)

    def retire(self, generation: int) -> None:
        """The snapshot naming `generation` is on disk: the older files are not needed, and
        changes the log missed are in it, so changes are taken again."""
        for number, path in existing_logs(self.state_path).items():
            if number < generation:
                path.unlink(missing_ok=True)
        if self._broken is not None:
            self._broken = None
            log.info("the append log %s takes changes again", self._current_path())

    def close(self) -> None:
        """At exit: stop the fsync thread, fsync what is left and close the file."""
        self._stop.set()
        self._live = False
        if self._thread.is_alive():
            self._thread.join(2 * self.fsync_interval + 1)
        if self._fd is not None:
            # Records of changes that were refused after they began (their views raised).
            with contextlib.suppress(OSError):
                self._flush(self._queued)
        self.sync()
        with self._io_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
