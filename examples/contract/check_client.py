"""Check your client against fakeshift: run your client's calls, then fail on any contract
violation the emulator recorded for your API key. Standard library only.

    BLUESHIFT_BASE_URL=http://127.0.0.1:8080 BLUESHIFT_API_KEY=ci-job-17 \
        python examples/contract/check_client.py

Exit status: 0 when the emulator saw no violation from this key, 1 otherwise.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import quote

BASE_URL = os.environ.get("BLUESHIFT_BASE_URL", "http://127.0.0.1:8080").rstrip("/")
API_KEY = os.environ["BLUESHIFT_API_KEY"]
# Blueshift: HTTP Basic with the API key as user name and an empty password.
AUTHORIZATION = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()


def call(method, path, body=None, auth=True):
    request = urllib.request.Request(BASE_URL + path, method=method)
    if auth:
        request.add_header("Authorization", AUTHORIZATION)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def your_client_code():
    """Stands in for your SDK or service: create a customer, then erase them."""
    status, _ = call("POST", "/api/v1/customers",
                     {"email": "jane@example.com", "customer_id": "jane-1"})
    print(f"identify: {status}")
    status, _ = call("POST", "/api/v1/customers/delete?delete_all_matching_customers=true",
                     {"email": "jane@example.com"})
    print(f"delete: {status}")


def main():
    your_client_code()
    # The control plane, not Blueshift's API: no Blueshift credentials (an admin token if set).
    _, found = call("GET", f"/_fakeshift/violations?account={quote(API_KEY)}", auth=False)
    for violation in found["violations"]:
        print(f"VIOLATION {violation['method']} {violation['path']}: {violation['location']} "
              f"broke {violation['rule']}: {violation['message']}")
    print(f"{found['count']} contract violations for {API_KEY}")
    return 1 if found["count"] else 0


if __name__ == "__main__":
    sys.exit(main())
