"""Comparing a candidate's outcomes with a reference's, step by step, and the report.

Compared: the status; Content-Type (its media type) and the form of Retry-After; with equal
statuses, the body's shape and the step's observations (with different statuses the bodies
differ by necessity, and one row says so). Known differences, documented in docs/parity.md, are
listed once and not counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .outcomes import NO_ANSWER, Outcome
from .shapes import MISSING, compare

NOT_OBSERVED = "(not observed)"
# fakeshift's customer objects: the identifiers it stores, the uuid and the two timestamps.
FAKESHIFT_CUSTOMER_FIELDS = frozenset({"uuid", "email", "customer_id", "cookie", "device_id",
                                       "created_at", "updated_at"})
# The marker fakeshift puts on a customer whose deletion is pending (see the design record).
PENDING_MARKER_FIELDS = frozenset({"deletion_pending", "deletion_reason", "deletion_requested_at",
                                   "deletion_due_at", "is_forgotten", "forgotten_at"})
_CUSTOMER_KEY = re.compile(r"^(?:customer|user|users\[\])\.(?P<key>[^.\[]+)$")


@dataclass(frozen=True)
class Difference:
    check: str  # "status", "header", "body" or "observed"
    where: str  # a header, a body path or an observation; "" for the status
    reference: str
    candidate: str

    def to_json(self) -> dict:
        return {"check": self.check, "where": self.where, "reference": self.reference,
                "candidate": self.candidate}


def _customer_key(difference: Difference) -> str | None:
    match = _CUSTOMER_KEY.match(difference.where) if difference.check == "body" else None
    return match.group("key") if match else None


@dataclass(frozen=True)
class KnownDifference:
    id: str
    summary: str
    # Whether a difference on a step is this one; None for the diagnostic headers, which are
    # collected from every answer rather than found among the differences.
    matches: Callable[[str, Difference], bool] | None


DIAGNOSTIC_HEADERS = KnownDifference(
    "fakeshift-diagnostic-headers",
    "fakeshift adds X-Fakeshift-* headers (how many were scheduled, suppressed, removed; which "
    "fault fired) that Blueshift does not send; bodies stay Blueshift's", None)
# These describe fakeshift against Blueshift, so they apply only when the reference is not a
# fakeshift: between two fakeshift servers, every difference counts.
AGAINST_BLUESHIFT = (
    KnownDifference(
        "customer-attributes-not-computed",
        "Blueshift's customer objects carry attributes it computes (email_hash, lifetime_*, "
        "predictive_*, ...); fakeshift's carry the identifiers, uuid and timestamps only",
        lambda _step, d: (d.candidate == MISSING and _customer_key(d) is not None
                          and _customer_key(d) not in FAKESHIFT_CUSTOMER_FIELDS)),
    KnownDifference(
        "pending-deletion-marker",
        "fakeshift marks a customer whose deletion is pending (deletion_pending, deletion_reason, "
        "deletion_requested_at, deletion_due_at; is_forgotten and forgotten_at after a forget); "
        "Blueshift documents no such fields",
        lambda _step, d: d.reference == MISSING and _customer_key(d) in PENDING_MARKER_FIELDS),
    KnownDifference(
        "forget-answers-both-shapes",
        'fakeshift answers forget with both documented bodies at once, {"status": "ok"} and '
        '{"customer": {"is_forgotten": true, "forgotten_at": ...}}',
        lambda step, d: (step == "forget" and d.check == "body"
                         and d.where in ("status", "customer") and d.reference == MISSING)),
)
KNOWN_DIFFERENCES = (DIAGNOSTIC_HEADERS, *AGAINST_BLUESHIFT)


def _status_text(outcome: Outcome) -> str:
    if outcome.status == NO_ANSWER and outcome.failure:
        return f"{NO_ANSWER} ({outcome.failure})"
    return str(outcome.status)


@dataclass
class StepResult:
    step: str
    title: str
    differences: list[Difference] = field(default_factory=list)
    known: list[tuple[KnownDifference, Difference]] = field(default_factory=list)
    not_compared: str | None = None
    diagnostic_headers: set[str] = field(default_factory=set)

    @property
    def result(self) -> str:
        if self.not_compared is not None:
            return "not compared"
        return "differs" if self.differences else "ok"


def compare_step(step: str, title: str, reference: Outcome | None, candidate: Outcome,
                 documented: bool, reference_is_fakeshift: bool) -> StepResult:
    result = StepResult(step, title)
    if reference is None:
        result.not_compared = "the reference file has no such step"
    elif reference.skipped is not None:
        result.not_compared = f"reference skipped it: {reference.skipped}"
    elif candidate.skipped is not None:
        result.not_compared = f"candidate skipped it: {candidate.skipped}"
    if result.not_compared is not None:
        return result
    found = []
    expected = reference.status
    # A file that records no status still expects an answer.
    if (expected is not None or candidate.status == NO_ANSWER) and expected != candidate.status:
        found.append(Difference("status", "", "an answer" if expected is None
                                else _status_text(reference), _status_text(candidate)))
    if candidate.status != NO_ANSWER and reference.status != NO_ANSWER:
        for header, theirs, ours in (
                ("Content-Type", reference.content_type, candidate.content_type),
                ("Retry-After", reference.retry_after, candidate.retry_after)):
            if theirs is not None and theirs != ours:
                found.append(Difference("header", header, theirs, ours))
        result.diagnostic_headers = (set(reference.diagnostic_headers)
                                     ^ set(candidate.diagnostic_headers))
    if candidate.status != NO_ANSWER and expected in (None, candidate.status):
        if reference.body is not None:
            found += [Difference("body", d.path, d.reference, d.candidate)
                      for d in compare(reference.body, candidate.body, documented)]
        for name, value in (reference.observed or {}).items():
            seen = (candidate.observed or {}).get(name, NOT_OBSERVED)
            if seen != value:
                found.append(Difference("observed", name, _text(value), _text(seen)))
    known = AGAINST_BLUESHIFT if not reference_is_fakeshift else ()
    for difference in found:
        match = next((k for k in known if k.matches(step, difference)), None)
        if match is None:
            result.differences.append(difference)
        else:
            result.known.append((match, difference))
    return result


def _text(value) -> str:
    return "true" if value is True else "false" if value is False else str(value)


@dataclass
class Report:
    mode: str  # "live" or "against"
    run_id: str
    settle_seconds: float
    reference: dict  # {"url" or "file": ..., "kind": ...}
    candidate: dict
    results: list[StepResult]
    cleanup: dict[str, list[str]]

    @property
    def counted(self) -> int:
        return sum(len(r.differences) for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.counted else 0

    def known_differences(self) -> list[dict]:
        """Each known difference once, with the steps and places it was seen."""
        seen: dict[str, dict] = {}

        def note(known: KnownDifference, step: str, where: str) -> None:
            entry = seen.setdefault(known.id, {"id": known.id, "summary": known.summary,
                                               "steps": [], "where": []})
            for items, item in ((entry["steps"], step), (entry["where"], where)):
                if item not in items:
                    items.append(item)

        for result in self.results:
            for known, difference in result.known:
                note(known, result.step, difference.where)
            for header in sorted(result.diagnostic_headers):
                note(DIAGNOSTIC_HEADERS, result.step, header)
        order = [k.id for k in KNOWN_DIFFERENCES]
        return sorted(seen.values(), key=lambda entry: order.index(entry["id"]))

    def to_json(self) -> dict:
        return {
            "mode": self.mode, "run": self.run_id, "settle_seconds": self.settle_seconds,
            "reference": self.reference, "candidate": self.candidate,
            "steps": [{"step": r.step, "title": r.title, "result": r.result,
                       **({"reason": r.not_compared} if r.not_compared else {}),
                       "differences": [d.to_json() for d in r.differences]}
                      for r in self.results],
            "known_differences": self.known_differences(),
            "cleanup": self.cleanup,
            "differences": self.counted,
            "exit_code": self.exit_code,
        }

    def render(self) -> str:
        lines = [(f"fakeshift parity: candidate {_side(self.candidate)} against reference "
                 f"{_side(self.reference)}"),
                 (f"run {self.run_id}, {len(self.results)} steps, settle wait "
                 f"{self.settle_seconds:g}s"), ""]
        rows = [("STEP", "CHECK", "WHERE", "REFERENCE", "CANDIDATE")]
        for result in self.results:
            if result.not_compared is not None:
                rows.append((result.step, "not compared", result.not_compared, "", ""))
            elif not result.differences:
                rows.append((result.step, "ok", "", "", ""))
            for d in result.differences:
                rows.append((result.step, d.check, d.where, d.reference, d.candidate))
        lines += _table(rows)
        known = self.known_differences()
        if known:
            lines += ["", "Known differences (docs/parity.md), listed once and not counted:"]
            for entry in known:
                lines += [f"  {entry['id']}: {entry['summary']}",
                          f"    seen at: {_clipped(', '.join(entry['where']), 200)}",
                          f"    on steps: {_clipped(', '.join(entry['steps']), 200)}"]
        for role, notes in self.cleanup.items():
            lines += ["", f"Cleanup on the {role}:"] + [f"  {note}" for note in notes]
        compared = sum(1 for r in self.results if r.not_compared is None)
        differing = sum(1 for r in self.results if r.differences)
        lines += ["", f"{compared} of {len(self.results)} steps compared: "
                      + (f"{self.counted} differences in {differing} steps" if self.counted
                         else "no differences")]
        return "\n".join(lines)


def _side(side: dict) -> str:
    where = side.get("url") or side.get("file")
    return f"{where} ({side['kind']})"


def _clipped(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 3] + "..."


# The widest a column may be: a long body path or skip reason is cut, not wrapped.
COLUMN_WIDTHS = (28, 12, 44, 24, 24)


def _table(rows: list[tuple]) -> list[str]:
    widths = [min(most, max(len(row[i]) for row in rows)) for i, most in enumerate(COLUMN_WIDTHS)]
    lines = []
    for row in rows:
        # The last filled cell runs on (nothing to its right needs aligning); others are cut.
        last = max(i for i, cell in enumerate(row) if cell or i == 0)
        cells = [cell if i == last else _clipped(cell, widths[i]).ljust(widths[i])
                 for i, cell in enumerate(row[:last + 1])]
        lines.append("  ".join(cells))
    return lines
