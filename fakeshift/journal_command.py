"""`fakeshift journal --har FILE`: save a running server's request journal as a HAR 1.2 file.

The server builds the HAR (`GET /_fakeshift/journal.har`, see har.py, credentials redacted);
this command only asks for it, with the journal's filters, and writes it. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .client import FakeshiftClient, FakeshiftError
from .journal import JournalQuery

# Large journals (10,000 entries of a few kilobytes) take longer than the client's default.
FETCH_TIMEOUT_SECONDS = 120


def add_parser(sub) -> None:
    p = sub.add_parser(
        "journal", help="save a running server's request journal as a HAR file",
        description="Fetch GET /_fakeshift/journal.har (credentials redacted, people masked) "
                    "from a running server and write it. The filters are the journal's.")
    p.add_argument("--har", required=True, metavar="FILE", help="write HAR 1.2 here; - for stdout")
    p.add_argument("--url", "--base-url", dest="url",
                   default=os.environ.get("FAKESHIFT_BASE_URL", "http://127.0.0.1:8080"),
                   help="[FAKESHIFT_BASE_URL] the server; default http://127.0.0.1:8080")
    p.add_argument("--admin-token", default=os.environ.get("FAKESHIFT_ADMIN_TOKEN"),
                   help="[FAKESHIFT_ADMIN_TOKEN] the server's admin token, if it has one")
    for name in JournalQuery._fields:
        p.add_argument(f"--{name}", help="a journal filter, as GET /_fakeshift/journal takes it")
    p.add_argument("--no-redact", dest="redact", action="store_false",
                   help="keep the people's identifiers (emails, customer_ids, cookies, "
                        "device_ids) unmasked; credentials are redacted regardless")
    p.set_defaults(run=run_journal)


def run_journal(args: argparse.Namespace) -> int:
    control = FakeshiftClient(args.url, args.admin_token, timeout=FETCH_TIMEOUT_SECONDS)
    filters = {name: getattr(args, name) for name in JournalQuery._fields}
    if not args.redact:
        filters["redact"] = "false"
    try:
        document = control.request("GET", "/journal.har", query=filters)
    except FakeshiftError as exc:
        print(f"fakeshift: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Refused, unknown host, timeout: one line naming the cause, not a traceback.
        print(f"fakeshift: error: {args.url} cannot be reached ({_cause(exc)})", file=sys.stderr)
        return 2
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.har == "-":
        sys.stdout.write(text)
    else:
        Path(args.har).write_text(text, encoding="utf-8")
        print(f"wrote {args.har} (HAR 1.2, entries: {len(document['log']['entries'])})",
              file=sys.stderr)
    return 0


def _cause(exc: OSError) -> str:
    reason = getattr(exc, "reason", exc)  # urllib wraps socket errors in URLError
    return getattr(reason, "strerror", None) or str(reason)
