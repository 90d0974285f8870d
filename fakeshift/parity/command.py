"""The `fakeshift parity` command: its arguments, its three modes, and its exit status.

- live:    --reference URL --reference-key KEY --candidate URL [--candidate-key KEY]
- record:  --reference URL --reference-key KEY --record FILE
- against: --against [FILE] --candidate URL [--candidate-key KEY]

Exit 0: no difference; 1: differences; 2: a usage, file or connection problem (one line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from importlib import resources

from .. import __version__
from ..scenario import parse_duration
from .compare import Report, compare_step
from .outcomes import ShapesFile, ShapesFileError
from .scenario import IMMEDIATE_STEPS, SETTLED_STEPS, STEPS, Run, Side, clean_up, play
from .transport import ConnectionProblem, Server, is_loopback, shown_url

# Keys from the environment keep them out of the process list and of shell history.
REFERENCE_KEY_ENV = "FAKESHIFT_PARITY_REFERENCE_KEY"
CANDIDATE_KEY_ENV = "FAKESHIFT_PARITY_CANDIDATE_KEY"
REFERENCE_ADMIN_TOKEN_ENV = "FAKESHIFT_PARITY_REFERENCE_ADMIN_TOKEN"
CANDIDATE_ADMIN_TOKEN_ENV = "FAKESHIFT_PARITY_CANDIDATE_ADMIN_TOKEN"
SHIPPED_SHAPES = "blueshift-shapes.json"
DEFAULT_SETTLE_SECONDS = 5.0


class UsageError(Exception):
    """Refused before anything is sent (exit status 2)."""


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_parity_command(subparsers) -> None:
    # No help text shows a default: the keys' defaults come from the environment.
    p = subparsers.add_parser(
        "parity", help="play one scenario against Blueshift (or its recorded shapes) and a "
                       "candidate, and list where they differ",
        description="Play the seed pages' scenario (duplicates, delete, the 50 cap, forget, "
                    "unforget, lists, groups, errors) against a reference and a candidate and "
                    "compare statuses, body shapes, Content-Type, Retry-After and what reads "
                    "show at once and after --settle. It creates and deletes customers of its "
                    "own (parity-<run id>-...): a server that is not on this machine needs "
                    "--yes-destructive. Exit 0: no difference; 1: differences; 2: usage or "
                    "connection error. See docs/parity.md.")
    p.add_argument("--reference", metavar="URL", help="the reference, e.g. a Blueshift sandbox: "
                   "https://api.getblueshift.com")
    p.add_argument("--reference-key", metavar="KEY", default=os.environ.get(REFERENCE_KEY_ENV),
                   help=f"its API key [{REFERENCE_KEY_ENV}]")
    p.add_argument("--reference-admin-token", metavar="TOKEN",
                   default=os.environ.get(REFERENCE_ADMIN_TOKEN_ENV),
                   help=f"a fakeshift reference's admin token, to seed a group "
                        f"[{REFERENCE_ADMIN_TOKEN_ENV}]")
    p.add_argument("--candidate", metavar="URL", help="the server checked, e.g. fakeshift")
    p.add_argument("--candidate-key", metavar="KEY", default=os.environ.get(CANDIDATE_KEY_ENV),
                   help=f"its API key; default: a new key for this run (a fresh fakeshift "
                        f"account) [{CANDIDATE_KEY_ENV}]")
    p.add_argument("--candidate-admin-token", metavar="TOKEN",
                   default=os.environ.get(CANDIDATE_ADMIN_TOKEN_ENV),
                   help=f"a fakeshift candidate's admin token, to seed a group "
                        f"[{CANDIDATE_ADMIN_TOKEN_ENV}]")
    p.add_argument("--record", metavar="FILE",
                   help="play against --reference only and store its shapes in FILE (no "
                        "identifiers, values or keys: safe to commit)")
    p.add_argument("--against", metavar="FILE", nargs="?", const="",
                   help="compare --candidate with a recorded FILE instead of a live reference; "
                        "without FILE, with the shapes shipped with fakeshift, written from "
                        "Blueshift's reference pages and export")
    p.add_argument("--settle", type=_seconds, metavar="SECONDS",
                   help="wait before the reads are repeated (e.g. 30, 5m); default "
                        f"{DEFAULT_SETTLE_SECONDS:g}s, or the --against file's")
    p.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                   help="for each request; default 30s")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--yes-destructive", action="store_true",
                   help="allow servers that are not on this machine (loopback)")
    p.set_defaults(run=run_parity)


def run_parity(args: argparse.Namespace) -> int:
    try:
        if args.record:
            return _record(args)
        report = _compare(args)
    except (UsageError, ConnectionProblem, ShapesFileError) as exc:
        print(f"fakeshift parity: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else report.render())
    return report.exit_code


# ---- usage -----------------------------------------------------------------------------------

def _check_url(url: str, flag: str, yes_destructive: bool) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} must be an http(s) URL")
    if parts.username is not None or parts.password is not None:
        # Said without the URL: what sits before the @ may be a key.
        raise UsageError(f"{flag} must not hold a user name or password: give the key with "
                         f"{flag}-key")
    if not is_loopback(url) and not yes_destructive:
        raise UsageError(f"{shown_url(url)} is not on this machine, and the run creates and "
                         "deletes customers there (its own only). Add --yes-destructive to run "
                         "it anyway.")


def _check_usage(args: argparse.Namespace) -> None:
    against, recording = args.against is not None, bool(args.record)
    if against and recording:
        raise UsageError("--record and --against do not go together")
    if recording and args.candidate:
        raise UsageError("--record plays against --reference alone: leave out --candidate")
    if against and args.reference:
        raise UsageError("--against replaces --reference: give one of them")
    if not args.candidate and not recording:
        raise UsageError("give --candidate URL (the server to check)")
    if not args.reference and not against:
        raise UsageError("give --reference URL and --reference-key KEY, or --against FILE")
    if args.reference and not args.reference_key:
        raise UsageError(f"--reference needs --reference-key KEY (or {REFERENCE_KEY_ENV})")
    if args.timeout <= 0:
        raise UsageError("--timeout must be more than 0")
    # Both URLs are checked before either is reached: nothing is sent when one is refused.
    if args.reference:
        _check_url(args.reference, "--reference", args.yes_destructive)
    if args.candidate:
        _check_url(args.candidate, "--candidate", args.yes_destructive)


def _side(role: str, url: str, key: str, admin_token: str | None, timeout: float) -> Side:
    server = Server(url, key, admin_token, timeout)
    health = server.check_reachable()
    body = health.json() if health.status == 200 else None
    is_fakeshift = (isinstance(body, dict) and body.get("status") == "ok"
                    and "internal_errors" in body)
    return Side(role, server, is_fakeshift)


def _describe(side: Side) -> dict:
    return {"url": shown_url(side.server.base_url),
            "kind": "fakeshift" if side.is_fakeshift else "blueshift"}


def _play(run: Run, sides: list[Side], settle: float) -> tuple[dict, dict]:
    """Every step on every side in turn; then the settle wait and the repeated reads; cleanup
    whatever happens (also on Ctrl-C)."""
    outcomes = {side.role: {} for side in sides}
    try:
        for steps in (IMMEDIATE_STEPS, SETTLED_STEPS):
            for step in steps:
                for side in sides:
                    outcomes[side.role][step.id] = play(step, run, side)
            if steps is IMMEDIATE_STEPS:
                time.sleep(settle)
    finally:
        cleanup = {side.role: clean_up(run, side) for side in sides}
    return outcomes, cleanup


def _shipped_shapes() -> ShapesFile:
    with resources.as_file(resources.files(__package__) / SHIPPED_SHAPES) as path:
        return ShapesFile.read(str(path))


# ---- the modes -------------------------------------------------------------------------------

def _compare(args: argparse.Namespace) -> Report:
    _check_usage(args)
    run = Run.new()
    candidate_key = args.candidate_key or f"{run.id}-candidate"
    if args.against is not None:
        recorded = ShapesFile.read(args.against) if args.against else _shipped_shapes()
        sides = [_side("candidate", args.candidate, candidate_key, args.candidate_admin_token,
                       args.timeout)]
        settle = args.settle if args.settle is not None else recorded.settle_seconds
        reference_outcomes = recorded.steps
        reference = {"file": args.against or f"{SHIPPED_SHAPES}, shipped with fakeshift",
                     "kind": recorded.reference}
        documented = recorded.shapes == "documented"
        reference_is_fakeshift = recorded.reference == "fakeshift"
    else:
        sides = [_side("reference", args.reference, args.reference_key,
                       args.reference_admin_token, args.timeout),
                 _side("candidate", args.candidate, candidate_key, args.candidate_admin_token,
                       args.timeout)]
        settle = args.settle if args.settle is not None else DEFAULT_SETTLE_SECONDS
        reference = _describe(sides[0])
        documented, reference_is_fakeshift = False, sides[0].is_fakeshift
    outcomes, cleanup = _play(run, sides, settle)
    if args.against is None:
        reference_outcomes = outcomes["reference"]
    results = [compare_step(step.id, step.title, reference_outcomes.get(step.id),
                            outcomes["candidate"][step.id], documented, reference_is_fakeshift)
               for step in STEPS]
    return Report("against" if args.against is not None else "live", run.id, settle, reference,
                  _describe(sides[-1]), results, cleanup)


def _record(args: argparse.Namespace) -> int:
    _check_usage(args)
    run = Run.new()
    side = _side("reference", args.reference, args.reference_key, args.reference_admin_token,
                 args.timeout)
    settle = args.settle if args.settle is not None else DEFAULT_SETTLE_SECONDS
    outcomes, cleanup = _play(run, [side], settle)
    recorded = ShapesFile(_describe(side)["kind"], "observed", settle,
                          f"recorded by fakeshift parity {__version__}", outcomes["reference"])
    recorded.write(args.record)
    skipped = {step: outcome.skipped for step, outcome in outcomes["reference"].items()
               if outcome.skipped}
    summary = {"mode": "record", "file": args.record, "reference": _describe(side),
               "run": run.id, "settle_seconds": settle, "steps": len(outcomes["reference"]),
               "skipped": skipped, "cleanup": cleanup}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        lines = [(f"fakeshift parity: recorded {summary['steps']} steps of "
                 f"{shown_url(side.server.base_url)} ({summary['reference']['kind']}) in "
                 f"{args.record}, run {run.id}")]
        lines += [f"  skipped {step}: {why}" for step, why in skipped.items()]
        lines += ["Cleanup on the reference:"] + [f"  {note}" for note in cleanup["reference"]]
        print("\n".join(lines))
    return 0
