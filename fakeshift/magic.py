"""Magic inputs: identifiers that make a request fail, for clients that cannot send a header.

Stripe's test cards and Twilio's magic numbers are the model. An email at the reserved domain,
or a customer_id with the reserved prefix, names a fault in the part before the domain (or after
the prefix); anything after a `+` only tells identifiers apart, each with its own counter:

    503@fail.fakeshift.test              every call answers 503 with Blueshift's body
    429-retry-30@fail.fakeshift.test     429 with Retry-After: 30 (plain `429`: none, as Blueshift)
    latency-2s@fail.fakeshift.test       waits 2 s, then answers normally
    drop@fail.fakeshift.test             the connection is dropped with no answer
    first-3-503+job17@fail.fakeshift.test  the first 3 calls answer 503, then they succeed
    fakeshift-fail-first-2-drop          the same, as a customer_id

`directive` turns one into the compact fault syntax of `faults.parse_spec`, so a magic input is
checked, bounded and journaled exactly as the `X-Fakeshift-Fault` header is.
"""

from __future__ import annotations

import re

EMAIL_DOMAIN = "fail.fakeshift.test"
CUSTOMER_ID_PREFIX = "fakeshift-fail-"
LABEL = "magic"
# A cheap test on the raw request before anything is parsed: most requests have neither. Domains
# are case-insensitive, so the test is too.
MARKER = re.compile(re.escape(EMAIL_DOMAIN.encode()) + b"|" + re.escape(CUSTOMER_ID_PREFIX.encode()),
                    re.IGNORECASE)

_DIRECTIVE = re.compile(
    r"(?:first-(?P<first>[0-9]{1,6})-)?"
    r"(?:(?P<status>[45][0-9][0-9])(?:-retry-(?P<retry>[0-9]{1,5}))?"
    r"|latency-(?P<latency>[0-9]{1,6}(?:ms|s))"
    r"|(?P<drop>drop))", re.ASCII)
_IDENTIFIER_FIELDS = ("email", "customer_id")


class MagicInputError(ValueError):
    """An identifier at the reserved domain or prefix that names no fault."""


def directive(identifier: str) -> str | None:
    """The fault an identifier names, in the compact syntax; None for an ordinary one."""
    if not isinstance(identifier, str):
        return None
    if identifier.lower().endswith("@" + EMAIL_DOMAIN):
        text = identifier[:-len(EMAIL_DOMAIN) - 1]
    elif identifier.startswith(CUSTOMER_ID_PREFIX):
        text = identifier[len(CUSTOMER_ID_PREFIX):]
    else:
        return None
    text = text.partition("+")[0]
    match = _DIRECTIVE.fullmatch(text)
    if match is None:
        raise MagicInputError(
            f"{identifier!r} uses the reserved magic-input domain or prefix but names no fault "
            "(for example 503, 429-retry-30, latency-2s, drop, first-3-503)")
    parts = []
    if match["status"]:
        parts.append(f"status={match['status']}")
        if match["retry"]:
            parts.append(f"retry_after={match['retry']}")
    elif match["latency"]:
        parts.append(f"latency={match['latency']}")
    else:
        parts.append("drop")
    if match["first"]:
        parts.append(f"first={match['first']}")
    return ",".join(parts)


def find_identifier(body, args) -> str | None:
    """The first magic identifier in a request: its query, its top-level body fields, or one
    customer of a bulk call."""
    for name in _IDENTIFIER_FIELDS:
        value = args.get(name)
        if value is not None and directive(value) is not None:
            return value
    candidates = [body] if isinstance(body, dict) else []
    if isinstance(body, dict):
        for field in ("customers", "users", "events"):
            if isinstance(body.get(field), list):
                candidates += [item for item in body[field] if isinstance(item, dict)]
    for candidate in candidates:
        for name in _IDENTIFIER_FIELDS:
            value = candidate.get(name)
            if value is not None and directive(value) is not None:
                return value
    return None
