"""What one server answered on one step, with every value taken out, and the shapes file that
stores a reference's outcomes for offline checks.

An outcome keeps the status, the media type, the form of Retry-After, the body's shape, a few
observations (counts and booleans, never identifiers) and the names of fakeshift's diagnostic
headers. That is all a shapes file holds, so it is safe to commit.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from .shapes import body_shape
from .transport import Answer

FORMAT = "fakeshift-parity-shapes/1"
NO_ANSWER = "no answer"
NO_HEADER = "(none)"
DIAGNOSTIC_PREFIX = "x-fakeshift-"
# "observed": recorded from a server, to be matched exactly. "documented": written from
# Blueshift's pages, a description the candidate must fit (see shapes.compare).
SHAPE_KINDS = ("observed", "documented")
REFERENCE_KINDS = ("fakeshift", "blueshift")


class ShapesFileError(ValueError):
    """A shapes file that cannot be read; the message names the file and the problem."""


def _retry_after_form(value: str | None) -> str:
    """The form of Retry-After, not its value: clients parse seconds and HTTP dates apart."""
    if value is None:
        return NO_HEADER
    if value.strip().isdigit():
        return "seconds"
    try:
        parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return "unparseable"
    return "HTTP date"


@dataclass
class Outcome:
    # None in any field: not recorded, so not compared (a documented file says nothing there).
    status: int | str | None = None  # an HTTP status, or NO_ANSWER
    content_type: str | None = None  # the media type without parameters, or NO_HEADER
    retry_after: str | None = None
    body: object = None  # a shape (see shapes.py)
    observed: dict | None = None
    diagnostic_headers: tuple[str, ...] = ()
    skipped: str | None = None  # why this server did not play the step
    failure: str | None = None  # why there was no answer; shown, never stored
    source: str | None = None  # documented files: where the expectation comes from

    @classmethod
    def from_answer(cls, answer: Answer) -> Outcome:
        if answer.status is None:
            return cls(status=NO_ANSWER, failure=answer.failure)
        media_type = answer.headers.get("content-type")
        return cls(
            status=answer.status,
            content_type=media_type.split(";")[0].strip().lower() if media_type else NO_HEADER,
            retry_after=_retry_after_form(answer.headers.get("retry-after")),
            body=body_shape(answer.body),
            diagnostic_headers=tuple(sorted(
                "-".join(part.capitalize() for part in name.split("-"))
                for name in answer.headers if name.startswith(DIAGNOSTIC_PREFIX))),
        )

    def to_record(self) -> dict:
        return {name: value for name, value in (
            ("skipped", self.skipped), ("source", self.source), ("status", self.status),
            ("content_type", self.content_type), ("retry_after", self.retry_after),
            ("body", self.body), ("observed", self.observed or None),
            ("diagnostic_headers", list(self.diagnostic_headers) or None),
        ) if value is not None}

    @classmethod
    def from_record(cls, record, where: str) -> Outcome:
        if not isinstance(record, dict):
            raise ShapesFileError(f"{where}: must be an object")
        unknown = set(record) - _RECORD_FIELDS
        if unknown:
            raise ShapesFileError(f"{where}: unknown field {min(unknown)!r}")
        status = record.get("status")
        if status is not None and status != NO_ANSWER and (
                isinstance(status, bool) or not isinstance(status, int)):
            raise ShapesFileError(f"{where}.status: must be an HTTP status or {NO_ANSWER!r}")
        for name in ("skipped", "source", "content_type", "retry_after"):
            if record.get(name) is not None and not isinstance(record[name], str):
                raise ShapesFileError(f"{where}.{name}: must be a string")
        observed = record.get("observed")
        if observed is not None and not isinstance(observed, dict):
            raise ShapesFileError(f"{where}.observed: must be an object")
        headers = record.get("diagnostic_headers", [])
        if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
            raise ShapesFileError(f"{where}.diagnostic_headers: must be a list of names")
        return cls(status=status, content_type=record.get("content_type"),
                   retry_after=record.get("retry_after"), body=record.get("body"),
                   observed=observed, diagnostic_headers=tuple(headers),
                   skipped=record.get("skipped"), source=record.get("source"))


_RECORD_FIELDS = frozenset(Outcome.__dataclass_fields__) - {"failure"}


@dataclass
class ShapesFile:
    reference: str  # one of REFERENCE_KINDS: what answered (known differences depend on it)
    shapes: str  # one of SHAPE_KINDS
    settle_seconds: float
    source: str
    steps: dict[str, Outcome] = field(default_factory=dict)

    def write(self, path: str) -> None:
        document = {"format": FORMAT, "source": self.source, "reference": self.reference,
                    "shapes": self.shapes, "settle_seconds": self.settle_seconds,
                    "steps": {step: outcome.to_record() for step, outcome in self.steps.items()}}
        directory = os.path.dirname(os.path.abspath(path))
        # Written whole or not at all: a scheduled job must never commit half a file.
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".parity-", suffix=".json")
        try:
            with os.fdopen(handle, "w") as stream:
                json.dump(document, stream, indent=2)
                stream.write("\n")
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise

    @classmethod
    def read(cls, path: str) -> ShapesFile:
        try:
            with open(path, encoding="utf-8") as stream:
                document = json.load(stream)
        except OSError as exc:
            raise ShapesFileError(f"cannot read {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ShapesFileError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ShapesFileError(f"{path} is not a parity shapes file (format {FORMAT!r})")
        if document.get("reference") not in REFERENCE_KINDS:
            raise ShapesFileError(f"{path}: reference must be one of {', '.join(REFERENCE_KINDS)}")
        if document.get("shapes") not in SHAPE_KINDS:
            raise ShapesFileError(f"{path}: shapes must be one of {', '.join(SHAPE_KINDS)}")
        settle = document.get("settle_seconds")
        if isinstance(settle, bool) or not isinstance(settle, (int, float)) or settle < 0:
            raise ShapesFileError(f"{path}: settle_seconds must be a number of seconds")
        steps = document.get("steps")
        if not isinstance(steps, dict):
            raise ShapesFileError(f"{path}: steps must be an object")
        return cls(document["reference"], document["shapes"], float(settle),
                   str(document.get("source", "")),
                   {step: Outcome.from_record(record, f"{path}: steps.{step}")
                    for step, record in steps.items()})
