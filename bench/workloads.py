"""What the load generator sends: one request builder per operation, the seed each needs, and
plans (files of requests) that wrk replays with bench/replay.lua.

Every request of a plan targets its own seeded profile, group or suppression, so a run never
runs out of work (a delete hits a profile nobody deleted before) and a non-2xx answer means
something went wrong rather than "the data was used up". Each run seeds a fresh account.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

LIST_ID = 4242
OPERATIONS = ("identify", "forget", "unforget", "delete", "delete_all", "list_remove",
              "group_delete")
# Duplicates per email for the delete-all workload: each call schedules all of them.
DUPLICATES = 2


def authorization(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def build_request(operation: str, n: int) -> tuple[str, str, dict | None]:
    """(method, path, JSON body) of the n-th request of an operation."""
    if operation == "identify":
        return "POST", "/api/v1/customers", {"customer_id": f"new{n}",
                                             "email": f"new{n}@bench.test", "firstname": "Bench"}
    if operation == "forget":
        return "POST", "/api/v1/customers/forget", {"email": f"fgt{n}@bench.test"}
    if operation == "unforget":
        return "POST", "/api/v1/customers/unforget", {"email": f"sup{n}@bench.test"}
    if operation == "delete":
        return "POST", "/api/v1/customers/delete", {"customer_id": f"del{n}"}
    if operation == "delete_all":
        return ("POST", "/api/v1/customers/delete?delete_all_matching_customers=true",
                {"email": f"dup{n}@bench.test"})
    if operation == "list_remove":
        return ("PUT", f"/api/v1/custom_user_lists/remove_user_from_list/{LIST_ID}",
                {"identifier_key": "email", "identifier_value": f"lst{n}@bench.test"})
    if operation == "group_delete":
        delete_users = "true" if n % 2 else "false"
        return "DELETE", f"/api/v1/customer_group/grp{n}?delete_users={delete_users}", None
    raise ValueError(f"unknown operation {operation!r}")


def seed_fragment(counts: dict[str, int]) -> dict:
    """The control plane's seed body giving each operation `counts[operation]` targets."""
    generate, suppressed, lists, groups = [], [], [], []

    def family(count: int, **templates) -> None:
        generate.append({"count": count, "start": 0, **templates})

    for operation, count in counts.items():
        if count == 0:
            continue
        if operation == "forget":
            family(count, email="fgt{n}@bench.test", customer_id="fgt{n}")
        elif operation == "unforget":
            suppressed.extend({"email": f"sup{n}@bench.test"} for n in range(count))
        elif operation == "delete":
            family(count, email="del{n}@bench.test", customer_id="del{n}")
        elif operation == "delete_all":
            for copy in range(DUPLICATES):
                family(count, email="dup{n}@bench.test", customer_id=f"dup{copy}-{{n}}")
        elif operation == "list_remove":
            family(count, email="lst{n}@bench.test")
            lists.append({"id": LIST_ID, "name": "bench", "source": "email",
                          "members": [f"lst{n}@bench.test" for n in range(count)]})
        elif operation == "group_delete":
            family(count, customer_id="grpm{n}")
            groups.extend({"group_id": f"grp{n}", "attributes": {"name": f"bench {n}"},
                           "members": [{"customer_id": f"grpm{n}"}]} for n in range(count))
    fragment = {"generate": generate}
    if suppressed:
        fragment["suppressed"] = suppressed
    if lists:
        fragment["lists"] = lists
    if groups:
        fragment["groups"] = groups
    return fragment


def plan(operations: tuple[str, ...], length: int) -> tuple[list[tuple], dict[str, int]]:
    """`length` requests cycling through `operations`, and how many targets each needs."""
    requests, counts = [], dict.fromkeys(operations, 0)
    for position in range(length):
        operation = operations[position % len(operations)]
        requests.append(build_request(operation, counts[operation]))
        counts[operation] += 1
    return requests, counts


def write_plan(requests: list[tuple], path: Path, path_prefix_to_strip: str = "") -> Path:
    """One line a request (METHOD, tab, path, tab, compact JSON or nothing), for replay.lua."""
    with open(path, "w") as out:
        for method, target, body in requests:
            if path_prefix_to_strip and target.startswith(path_prefix_to_strip):
                target = target[len(path_prefix_to_strip):]
            encoded = "" if body is None else json.dumps(body, separators=(",", ":"))
            out.write(f"{method}\t{target}\t{encoded}\n")
    return path
