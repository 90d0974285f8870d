"""The benchmark harness: starts every server itself on loopback, drives each with wrk in the same
run, and writes a table of figures, ratios and targets.

    python -m bench            # the full run (about ten minutes); writes bench/results.md
    python -m bench --smoke    # seconds, small sizes; checks the harness, not the speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

from fakeshift.models import DELETE_ALL_CAP

from . import processes, report
from .load import Run, run_wrk
from .processes import (BENCH, OUT, ROOT, Client, HarnessError, Server, ensure_prism,
                        ensure_wrk, start_bare, start_fakeshift, start_plugin_server,
                        start_prism, tool_version)
from .workloads import OPERATIONS, authorization, plan, seed_fragment, write_plan

# Requests a second a plan is sized for: above what fakeshift reaches here, so its plans never
# run out (a run that does reports "wraps"); the stateless servers may wrap around harmlessly.
PLAN_RATE = 4000
DELETE_ALL_DUPLICATES = 120
CONNECTIONS = 16


@dataclass
class Settings:
    seconds: int  # per throughput run
    reps: int  # throughput repetitions
    sizes: tuple[int, ...]  # profiles in the scale runs
    latency_requests: int  # forget / delete requests per scale run
    latency_seconds: int  # wrk's duration for those (it stops after latency_requests answers)
    scale_reps: int
    startup_reps: int
    reset_reps: int  # also the number of fresh accounts timed
    alone_on_every_server: bool  # single-operation workloads on bare Flask and Prism too


FULL = Settings(seconds=5, reps=3, sizes=(1_000, 100_000, 1_000_000), latency_requests=450,
                latency_seconds=2, scale_reps=5, startup_reps=5, reset_reps=50,
                alone_on_every_server=True)
SMOKE = Settings(seconds=1, reps=1, sizes=(1_000, 5_000), latency_requests=100,
                 latency_seconds=1, scale_reps=1, startup_reps=2, reset_reps=5,
                 alone_on_every_server=False)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


# ---- 1. throughput and latency at 16 connections ----------------------------------------------

def prism_prefix(spec: Path) -> str:
    """What to strip from /api/v1/... paths so they match the spec's paths (Prism routes on the
    `paths` keys alone)."""
    paths = yaml.safe_load(spec.read_text()).get("paths", {})
    if "/api/v1/customers/forget" in paths:
        return ""
    if "/customers/forget" in paths:
        return "/api/v1"
    raise HarnessError(f"{spec} has no forget path; cannot aim Prism")


def throughput(settings: Settings, wrk: str, prism_spec: Path | None, chosen: list[str],
               results: dict) -> None:
    workloads = [("mixed", OPERATIONS)] + [(operation, (operation,)) for operation in OPERATIONS]
    workloads = [(name, operations) for name, operations in workloads if name in chosen]
    servers: dict[str, Server] = {}
    prism_note = ""
    try:
        servers["fakeshift"] = start_fakeshift("fakeshift")
        servers["fakeshift, --access-log false"] = start_fakeshift("fakeshift-no-access-log",
                                                                   "--access-log", "false")
        servers["bare Flask/waitress"] = start_bare()
        prefix = ""
        if prism_spec is not None:
            prism, prism_note = ensure_prism()
            if prism is not None:
                results["machine"]["prism"] = tool_version([str(prism), "--version"])
                prefix = prism_prefix(prism_spec)
                servers["Prism"] = start_prism(prism, prism_spec)
        for server in servers.values():
            server.wait_ready()
        rows = []
        for name, operations in workloads:
            targets = list(servers)
            if name != "mixed":
                targets.remove("fakeshift, --access-log false")
                if not settings.alone_on_every_server:
                    targets = ["fakeshift"]
            requests, counts = plan(operations, settings.seconds * PLAN_RATE)
            plan_file = write_plan(requests, processes.work_dir / f"plan-{name}.txt")
            prism_plan = write_plan(requests, processes.work_dir / f"plan-{name}-prism.txt", prefix)
            runs: dict[str, list[Run]] = {target: [] for target in targets}
            for rep in range(settings.reps):
                # Rotate who goes first, so warm-up and drift do not favour one server.
                order = targets[rep % len(targets):] + targets[:rep % len(targets)]
                for target in order:
                    progress(f"throughput {name} rep {rep + 1}/{settings.reps}: {target}")
                    runs[target].append(_one_run(wrk, servers[target], target, name, rep, counts,
                                                 plan_file if target != "Prism" else prism_plan,
                                                 settings.seconds))
            rows.append(report.throughput_row(name, runs))
        results["throughput"] = rows
        results["prism_note"] = prism_note or ("" if prism_spec else
                                               "openapi/blueshift.yaml is missing: Prism skipped")
    finally:
        for server in servers.values():
            server.stop()


def _one_run(wrk, server: Server, target: str, workload: str, rep: int, counts: dict,
             plan_file: Path, seconds: int) -> Run:
    key = f"bench-{workload}-{rep}-{server.port}"
    client = Client(server.port) if target.startswith("fakeshift") else None
    if client:
        client.expect("POST", f"/_fakeshift/accounts/{key}/seed", seed_fragment(counts))
    try:
        run = run_wrk(wrk, server.url, plan_file, authorization(key), seconds,
                      CONNECTIONS)
    finally:
        if client:
            client.expect("DELETE", f"/_fakeshift/accounts/{key}")
            client.close()
    if client and run.non_2xx > run.requests * 0.01:
        raise HarnessError(f"{target} answered {run.status_summary()} on {workload}: the plan or "
                           f"its seed is broken (see {server.log_path})")
    return run


# ---- 2. scale: latency, memory and seeding against the number of profiles ---------------------

def scale(settings: Settings, wrk: str, results: dict) -> None:
    rows = []
    for size in settings.sizes:
        progress(f"scale: {size:,} profiles")
        server = start_fakeshift(f"fakeshift-scale-{size}")
        try:
            server.wait_ready()
            rows.append(_scale_one(settings, wrk, server, size))
        finally:
            server.stop()
    largest = max(settings.sizes)
    rows[-1]["scenario_ready_seconds"] = _scenario_start(largest)
    results["scale"] = rows


def _scenario_start(size: int) -> float:
    """Seconds from process start to ready for `fakeshift serve --scenario` generating `size`
    profiles: the other way to seed, with no answer listing every new uuid."""
    scenario = processes.work_dir / f"scale-{size}.yaml"
    scenario.write_text(yaml.safe_dump({"accounts": [{"key": "scale", "generate": [
        {"count": size, "start": 0, "email": "s{n}@scale.test", "customer_id": "s{n}"}]}]}))
    server = start_fakeshift(f"fakeshift-scenario-{size}", "--scenario", str(scenario))
    try:
        return server.wait_ready(timeout=600)
    finally:
        server.stop()


def _scale_one(settings: Settings, wrk: str, server: Server, size: int) -> dict:
    client = Client(server.port)
    k = settings.latency_requests
    # wrk stops after k answers, but its connections have sent up to one more request each by
    # then: those need targets of their own too, or they would repeat one and get a 404.
    span = k + CONNECTIONS
    # A fresh account per repetition when the store is too small to give every repetition its
    # own targets; one account otherwise (seeding a million profiles five times is too slow).
    reseed = size < settings.scale_reps * 2 * span
    client.expect("GET", "/api/v1/customers?email=warm%40up.test",
                  headers={"Authorization": authorization("warm-up")})
    rss_before = server.rss_bytes()
    seed_seconds = _seed_scale(client, "scale-0", size)
    rss_after = server.rss_bytes()
    forget, delete, delete_all = [], [], []
    for rep in range(settings.scale_reps):
        account = f"scale-{rep}" if reseed else "scale-0"
        if reseed and rep > 0:
            client.expect("DELETE", f"/_fakeshift/accounts/scale-{rep - 1}")
            _seed_scale(client, account, size)
        first = 0 if reseed else rep * 2 * span
        for operation, bucket, start in (("forget", forget, first),
                                         ("delete", delete, first + span)):
            requests = [_scale_request(operation, n) for n in range(start, start + span)]
            plan_file = write_plan(requests, processes.work_dir / f"plan-scale-{operation}.txt")
            bucket.append(run_wrk(wrk, server.url, plan_file, authorization(account),
                                  settings.latency_seconds, CONNECTIONS, stop_after=k))
        client.expect("POST", f"/_fakeshift/accounts/{account}/seed",
                      {"profiles": [{"email": f"dup{rep}@scale.test",
                                     "count": DELETE_ALL_DUPLICATES}]})
        delete_all.append(_delete_all(client, account, f"dup{rep}@scale.test"))
    client.close()
    for name, runs in (("forget", forget), ("delete", delete)):
        bad = sum(run.non_2xx for run in runs)
        if bad:
            raise HarnessError(f"scale {size}: {name} answered non-2xx {bad} times")
    return {
        "size": size,
        "forget_p50_ms": median(r.p50_ms for r in forget),
        "forget_p99_ms": median(r.p99_ms for r in forget),
        "delete_p50_ms": median(r.p50_ms for r in delete),
        "delete_p99_ms": median(r.p99_ms for r in delete),
        "seed_seconds": seed_seconds,
        "rss_before_mib": rss_before / 2**20,
        "rss_after_mib": rss_after / 2**20,
        "rss_per_profile_bytes": (rss_after - rss_before) / size,
        "delete_all_ms": median(delete_all) * 1000,
    }


def _seed_scale(client: Client, account: str, size: int) -> float:
    started = time.perf_counter()
    answer, _took = client.expect("POST", f"/_fakeshift/accounts/{account}/seed", {
        "generate": [{"count": size, "start": 0, "email": "s{n}@scale.test",
                      "customer_id": "s{n}"}]})
    took = time.perf_counter() - started
    if answer.get("created") != size:
        raise HarnessError(f"seeding {size} profiles created {answer.get('created')}")
    return took


def _scale_request(operation: str, n: int) -> tuple[str, str, dict]:
    if operation == "forget":
        return "POST", "/api/v1/customers/forget", {"email": f"s{n}@scale.test"}
    return "POST", "/api/v1/customers/delete", {"customer_id": f"s{n}"}


def _delete_all(client: Client, account: str, email: str) -> float:
    """Seconds taken by the delete-all calls that schedule all the duplicates (50 + 50 + 20),
    checked by the 404 that must follow them."""
    headers = {"Authorization": authorization(account)}
    path = "/api/v1/customers/delete?delete_all_matching_customers=true"
    total, calls = 0.0, 0
    while True:
        status, _body, took = client.call("POST", path, {"email": email}, headers)
        if status == 404:
            break
        if status != 200 or calls > DELETE_ALL_DUPLICATES:
            raise HarnessError(f"delete-all answered {status} after {calls} calls")
        total += took
        calls += 1
    expected = -(-DELETE_ALL_DUPLICATES // DELETE_ALL_CAP)
    if calls != expected:
        raise HarnessError(f"delete-all of {DELETE_ALL_DUPLICATES} took {calls} calls, "
                           f"not {expected}")
    return total


# ---- 3. start-up, reset and a fresh account ---------------------------------------------------

def startup(settings: Settings, results: dict) -> None:
    figures = {}
    for label, starter in (("serve", lambda: start_fakeshift("fakeshift-startup")),
                           ("plugin", start_plugin_server)):
        times = []
        for _ in range(settings.startup_reps):
            server = starter()
            try:
                times.append(server.wait_ready(poll=0.002))
            finally:
                server.stop()
        figures[f"{label}_start_ms"] = median(times) * 1000
        progress(f"start-up ({label}): {figures[f'{label}_start_ms']:.0f} ms")
    server = start_fakeshift("fakeshift-reset")
    try:
        server.wait_ready()
        client = Client(server.port)
        resets, first_calls, later_calls = [], [], []
        for rep in range(settings.reset_reps):
            # A typical test's leftovers: one account with a hundred profiles and a suppression.
            client.expect("POST", "/_fakeshift/accounts/test-leftovers/seed", {
                "generate": [{"count": 100, "email": "t{n}@reset.test"}],
                "suppressed": [{"email": "gone@reset.test"}]})
            resets.append(client.expect("POST", "/_fakeshift/reset")[1])
            headers = {"Authorization": authorization(f"fresh-account-{rep}")}
            body = {"email": "someone@fresh.test"}
            first_calls.append(client.expect("POST", "/api/v1/customers/unforget", body,
                                             headers)[1])
            later_calls.append(client.expect("POST", "/api/v1/customers/unforget", body,
                                             headers)[1])
        client.close()
    finally:
        server.stop()
    figures.update(reset_ms=median(resets) * 1000,
                   reset_p95_ms=statistics.quantiles(resets, n=20)[-1] * 1000
                   if len(resets) > 1 else resets[0] * 1000,
                   fresh_account_first_call_ms=median(first_calls) * 1000,
                   same_account_next_call_ms=median(later_calls) * 1000,
                   reset_samples=len(resets))
    results["startup"] = figures


# ---- the command ------------------------------------------------------------------------------

def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="seconds, small sizes, one repetition: checks the harness works")
    parser.add_argument("--out", type=Path,
                        help="markdown report (default: bench/results.md, or "
                             "bench/out/smoke.md with --smoke); the figures also go to .json")
    parser.add_argument("--prism-spec", type=Path, default=ROOT / "openapi" / "blueshift.yaml",
                        help="the OpenAPI document Prism mocks (default: openapi/blueshift.yaml)")
    parser.add_argument("--work", type=Path,
                        help="folder for server logs and request plans (default: "
                             "bench/out/full, or bench/out/smoke with --smoke)")
    parser.add_argument("--sections", default="throughput,scale,startup",
                        help="comma-separated subset of throughput,scale,startup")
    parser.add_argument("--workloads", default="mixed," + ",".join(OPERATIONS),
                        help="comma-separated throughput workloads (default: all)")
    parser.add_argument("--reps", type=int, help="repetitions (overrides the mode's)")
    parser.add_argument("--seconds", type=int, help="seconds per throughput run (overrides)")
    args = parser.parse_args(argv)
    settings = replace(SMOKE if args.smoke else FULL,
                       **{name: getattr(args, name) for name in ("reps", "seconds")
                          if getattr(args, name) is not None})
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(workloads) - {"mixed", *OPERATIONS}:
        parser.error(f"unknown workloads; choose from mixed, {', '.join(OPERATIONS)}")
    out = args.out or (OUT / "smoke.md" if args.smoke else BENCH / "results.md")
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"throughput", "scale", "startup"}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    processes.work_dir = args.work or OUT / ("smoke" if args.smoke else "full")
    processes.work_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "mode": "smoke" if args.smoke else "full",
                     "settings": asdict(settings)}
    try:
        wrk = ensure_wrk()
        results["machine"]["wrk"] = tool_version([wrk, "--version"])
        if "throughput" in sections:
            spec = args.prism_spec if args.prism_spec.exists() else None
            throughput(settings, wrk, spec, workloads, results)
        if "scale" in sections:
            scale(settings, wrk, results)
        if "startup" in sections:
            startup(settings, results)
    except HarnessError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(results))
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(out.read_text())
    progress(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
