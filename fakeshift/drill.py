"""Chaos drills: a YAML timeline of fault rules and rate limits, played on the real clock.

Each step installs its rules and limits, waits its duration (divided by `speed`), and gives way
to the next; at the end every rule the drill installed is removed and the rate limits it found
are restored. A step without `rate_limits` runs with the limits the server had before the drill.
The summary is computed from the request journal: Blueshift requests by status and by
operation, faults applied, and retries (the same account, method, path, query and body seen
again within `retry_window` of a faulted request).

`fakeshift drill FILE --base-url URL` plays a drill against a running server through its control
plane (HttpControl); `fakeshift serve --drill FILE` plays it inside the server (LocalControl).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from .clock import parse_iso
from .faults import FaultSpecError, compile_rule, parse_spec
from .journal import JournalQuery
from .ratelimit import check_limits
from .scenario import parse_duration

log = logging.getLogger("fakeshift.drill")
DEFAULT_RETRY_WINDOW = 5.0
_VALIDATOR = Draft202012Validator(yaml.safe_load(
    resources.files("fakeshift").joinpath("schemas/drill.schema.yaml").read_text()))


class DrillError(ValueError):
    """A drill that cannot be loaded or played; the message says where and why."""


@dataclass(frozen=True)
class Step:
    name: str
    duration: float
    faults: tuple[dict, ...]
    rate_limits: dict | None


@dataclass(frozen=True)
class Drill:
    source: str
    description: str
    retry_window: float
    steps: tuple[Step, ...]

    @classmethod
    def from_file(cls, path: str | Path) -> "Drill":
        try:
            text = Path(path).read_text(encoding="utf-8")
            document = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise DrillError(f"{path}: cannot read the drill: {exc}") from exc
        return cls.from_document(document, str(path))

    @classmethod
    def from_document(cls, document, source: str) -> "Drill":
        errors = sorted(_VALIDATOR.iter_errors(document), key=lambda e: list(e.absolute_path))
        if errors:
            where = ".".join(str(part) for part in errors[0].absolute_path) or "(top level)"
            raise DrillError(f"{source}: {where}: {errors[0].message}")
        steps = []
        for position, spec in enumerate(document["steps"]):
            where = f"{source}: steps[{position}] ({spec['name']})"
            faults = []
            for number, fault in enumerate(spec.get("faults", [])):
                try:
                    rule = parse_spec(fault)
                    # Named after the step, so the journal and summary say which step failed what.
                    rule.setdefault("id", f"{_slug(spec['name'])}-{number + 1}")
                    compile_rule(rule, f"{where}.faults[{number}]")
                except FaultSpecError as exc:
                    raise DrillError(str(exc)) from exc
                faults.append(rule)
            limits = spec.get("rate_limits")
            if limits is not None:
                try:
                    check_limits(limits, f"{where}.rate_limits")
                except FaultSpecError as exc:
                    raise DrillError(str(exc)) from exc
            steps.append(Step(spec["name"], parse_duration(spec["duration"]), tuple(faults),
                              limits))
        window = parse_duration(document.get("retry_window", DEFAULT_RETRY_WINDOW))
        return cls(source, document.get("description", ""), window, tuple(steps))

    @property
    def duration(self) -> float:
        return sum(step.duration for step in self.steps)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:48] or "step"


# ---- controlling a server ----------------------------------------------------------------------

class HttpControl:
    """A running server's control plane, over HTTP (stdlib only: the drill runs anywhere)."""

    def __init__(self, base_url: str, admin_token: str | None = None, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if admin_token:
            self.headers["X-Fakeshift-Admin-Token"] = admin_token
        self.timeout = timeout

    def _call(self, method: str, path: str, body=None, missing_ok: bool = False) -> dict:
        data = None if body is None else json.dumps(body).encode()
        call = urllib.request.Request(self.base_url + path, data=data, method=method,
                                      headers=self.headers)
        try:
            with urllib.request.urlopen(call, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return {}
            raise DrillError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}"
                             ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DrillError(f"{method} {path}: cannot reach {self.base_url}: {exc}") from exc

    def add_fault(self, rule: dict) -> str:
        return self._call("POST", "/_fakeshift/faults", rule)["id"]

    def remove_fault(self, rule_id: str) -> None:
        # Gone already if someone reset the server during the drill: that is fine.
        self._call("DELETE", f"/_fakeshift/faults/{rule_id}", missing_ok=True)

    def rate_limits(self) -> dict:
        return _limits_document(self._call("GET", "/_fakeshift/rate-limits"))

    def set_rate_limits(self, document: dict) -> None:
        self._call("PUT", "/_fakeshift/rate-limits", document)

    def last_journal_id(self) -> int:
        entries = self._call("GET", "/_fakeshift/journal?limit=1")["entries"]
        return entries[-1]["id"] if entries else 0

    def journal_after(self, entry_id: int) -> list[dict]:
        return self._call("GET", f"/_fakeshift/journal?after={entry_id}")["entries"]


class LocalControl:
    """The same operations on an in-process Emulator (`fakeshift serve --drill`)."""

    def __init__(self, emulator):
        self.emulator = emulator

    def add_fault(self, rule: dict) -> str:
        return self.emulator.faults.add(rule)["id"]

    def remove_fault(self, rule_id: str) -> None:
        self.emulator.faults.remove(rule_id)

    def rate_limits(self) -> dict:
        return _limits_document(self.emulator.rate_limits.describe())

    def set_rate_limits(self, document: dict) -> None:
        self.emulator.rate_limits.configure(document)

    def last_journal_id(self) -> int:
        _count, entries = self.emulator.journal.search(JournalQuery(limit=1))
        return entries[-1]["id"] if entries else 0

    def journal_after(self, entry_id: int) -> list[dict]:
        return self.emulator.journal.search(JournalQuery(after=entry_id))[1]


def _limits_document(described: dict) -> dict:
    return {k: v for k, v in described.items() if k not in ("enabled", "buckets")}


# ---- playing -----------------------------------------------------------------------------------

def play(drill: Drill, control, speed: float = 1.0, sleep=time.sleep, say=log.info) -> dict:
    """Play every step, clean up, and return the summary of the traffic seen meanwhile."""
    if speed <= 0:
        raise DrillError("speed must be greater than 0")
    first_id = control.last_journal_id()
    limits_before = control.rate_limits()
    installed: list[str] = []
    say(f"drill {drill.source}: {len(drill.steps)} steps, {drill.duration / speed:.1f}s")
    try:
        for position, step in enumerate(drill.steps, 1):
            _remove(control, installed)
            installed.extend(control.add_fault(rule) for rule in step.faults)
            control.set_rate_limits(step.rate_limits if step.rate_limits is not None
                                    else limits_before)
            say(f"step {position}/{len(drill.steps)} {step.name}: {len(step.faults)} fault "
                f"rules, rate limits {'on' if step.rate_limits else 'as before'}, "
                f"{step.duration / speed:.1f}s")
            sleep(step.duration / speed)
    finally:
        _remove(control, installed)
        control.set_rate_limits(limits_before)
    return summarize(control.journal_after(first_id), drill.retry_window)


def _remove(control, installed: list[str]) -> None:
    while installed:
        control.remove_fault(installed.pop())


def summarize(entries: list[dict], retry_window: float = DEFAULT_RETRY_WINDOW) -> dict:
    """Blueshift requests among journal entries, by status, operation and fault, and retries."""
    calls = [e for e in entries if not e["path"].startswith("/_fakeshift/")]
    by_status = Counter(_status(e) for e in calls)
    by_operation: dict[str, Counter] = defaultdict(Counter)
    for entry in calls:
        by_operation[_operation(entry)][_status(entry)] += 1
    faults = Counter(e["fault"] for e in calls if e["fault"] is not None)
    return {
        "requests": len(calls),
        "by_status": dict(sorted(by_status.items())),
        "by_operation": {name: {"total": sum(c.values()), **dict(sorted(c.items()))}
                         for name, c in sorted(by_operation.items())},
        "faults": dict(sorted(faults.items())),
        "retries": _retries(calls, retry_window),
    }


def _status(entry: dict) -> str:
    return "dropped" if entry["status"] is None else str(entry["status"])


def _operation(entry: dict) -> str:
    operation = entry.get("operation")
    return operation.split(".", 1)[1] if operation else f"{entry['method']} {entry['path']}"


def _retries(calls: list[dict], window: float) -> dict:
    """A faulted request counts as retried when the same client sends the same request
    (method, path, query, body) again within `window` seconds."""
    seen_at: dict[tuple, list] = defaultdict(list)
    for entry in calls:
        seen_at[(entry["account"], entry["method"], entry["path"], entry["query"],
                 entry["body"])].append(entry)
    clients: dict[str, Counter] = defaultdict(Counter)
    for same_request in seen_at.values():
        times = [parse_iso(e["time"]) for e in same_request]
        for position, entry in enumerate(same_request):
            if entry["fault"] is None:
                continue
            client = clients[entry["account"] or "(no account)"]
            client["faulted"] += 1
            following = position + 1 < len(same_request)
            if following and (times[position + 1] - times[position]).total_seconds() <= window:
                client["retried"] += 1
    faulted = sum(c["faulted"] for c in clients.values())
    retried = sum(c["retried"] for c in clients.values())
    return {"faulted": faulted, "retried": retried,
            "clients": {name: {"faulted": c["faulted"], "retried": c["retried"]}
                        for name, c in sorted(clients.items())}}


def format_summary(summary: dict) -> str:
    lines = [f"requests: {summary['requests']}",
             "by status: " + ", ".join(f"{k}: {v}" for k, v in summary["by_status"].items())]
    lines.append("by operation:")
    for name, counts in summary["by_operation"].items():
        detail = ", ".join(f"{k}: {v}" for k, v in counts.items() if k != "total")
        lines.append(f"  {name}: {counts['total']} ({detail})")
    lines.append("faults applied: " + (", ".join(f"{k}: {v}" for k, v in summary["faults"].items())
                                        or "none"))
    retries = summary["retries"]
    lines.append(f"retried after a fault: {retries['retried']} of {retries['faulted']}")
    for name, counts in retries["clients"].items():
        lines.append(f"  {name}: {counts['retried']} of {counts['faulted']}")
    return "\n".join(lines)


def play_in_server(emulator, drill: Drill, speed: float = 1.0) -> threading.Thread:
    """`fakeshift serve --drill`: play once the server is ready, log the summary, in a thread
    that never holds up a stop."""

    def run():
        emulator.ready.wait()
        try:
            summary = play(drill, LocalControl(emulator), speed)
        except (DrillError, FaultSpecError) as exc:
            log.error("drill %s failed: %s", drill.source, exc)
            return
        log.info("drill %s done\n%s", drill.source, format_summary(summary))

    thread = threading.Thread(target=run, name="fakeshift-drill", daemon=True)
    thread.start()
    return thread
