"""An application's GDPR module: erase or forget a person in Blueshift, with retries.

It talks to Blueshift's real API; point BLUESHIFT_BASE_URL at fakeshift in tests.

    python gdpr.py erase ann@example.com     # env: BLUESHIFT_BASE_URL, BLUESHIFT_API_KEY
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request

RETRYABLE = frozenset({429, 500, 502, 503, 504})
# Blueshift deletes at most 50 matching profiles per call.
MAX_DELETE_CALLS = 1000


class BlueshiftUnavailable(Exception):
    """Blueshift kept failing after every retry."""


class BlueshiftGDPR:
    def __init__(self, api_key: str, base_url: str = "https://api.getblueshift.com",
                 retries: int = 4, backoff: float = 0.2, timeout: float = 10.0,
                 sleep=time.sleep):
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = sleep
        token = base64.b64encode(f"{api_key}:".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def forget(self, email: str) -> None:
        """Stop tracking this person (Blueshift also suppresses the email from now on)."""
        self._post("/api/v1/customers/forget", {"email": email})

    def erase(self, email: str) -> int:
        """Delete every profile with this email, then stop tracking it. Returns how many
        delete calls removed something (each removes up to 50 duplicates)."""
        calls = 0
        while calls < MAX_DELETE_CALLS:
            status = self._post("/api/v1/customers/delete",
                                {"email": email, "delete_all_matching_customers": True},
                                not_found_ok=True)
            if status == 404:
                break
            calls += 1
        self.forget(email)
        return calls

    def _post(self, path: str, body: dict, not_found_ok: bool = False) -> int:
        data = json.dumps(body).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.base_url + path, data=data, method="POST",
                                             headers=self._headers)
            wait = self.backoff * 2 ** attempt
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    json.loads(response.read())  # a cut or garbled body is a failed call
                    return response.status
            except urllib.error.HTTPError as error:
                if error.code == 404 and not_found_ok:
                    return 404
                if error.code not in RETRYABLE:
                    raise
                wait = max(wait, float(error.headers.get("Retry-After") or 0))
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                    ValueError):
                pass  # dropped connection, truncated or malformed body: try again
            if attempt < self.retries:
                self.sleep(wait)
        raise BlueshiftUnavailable(f"POST {path} failed {self.retries + 1} times")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("erase", "forget"):
        print("usage: gdpr.py erase|forget EMAIL", file=sys.stderr)
        return 2
    gdpr = BlueshiftGDPR(os.environ["BLUESHIFT_API_KEY"],
                         os.environ.get("BLUESHIFT_BASE_URL", "https://api.getblueshift.com"))
    command, email = argv
    if command == "erase":
        print(json.dumps({"erased": email, "delete_calls": gdpr.erase(email)}))
    else:
        gdpr.forget(email)
        print(json.dumps({"forgotten": email}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
