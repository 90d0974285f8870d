"""The benchmark harness: starts every server itself on loopback (fakeshift, a bare Flask
handler, and the peers Prism, WireMock standalone and Mockoon CLI, which it installs with npm
into bench/.node), drives each with wrk in the same run, costs each layer of a request
(bench/layers.py), and writes a table of figures, ratios and targets (bench/report.py).

    python -m bench            # the full run (about a quarter of an hour); bench/results.md
    python -m bench --smoke    # about a minute, small sizes; checks the harness, not the speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

from fakeshift.models import DELETE_ALL_CAP

from . import processes, report
from .load import Run, run_wrk
from .processes import (
    BENCH,
    OUT,
    ROOT,
    Client,
    HarnessError,
    Server,
    ensure_java,
    ensure_node_tools,
    ensure_wrk,
    free_port,
    node_tool_version,
    start_bare,
    start_fakeshift,
    start_mockoon,
    start_plugin_server,
    start_prism,
    start_wiremock,
    tool_version,
)
from .stubs import write_mockoon_environment, write_wiremock_root
from .workloads import OPERATIONS, authorization, plan, seed_fragment, write_plan

# Requests a second a plan is sized for: above what fakeshift reaches here, so its plans never
# run out (a run that does reports "wraps"); the stateless servers may wrap around harmlessly.
PLAN_RATE = 4000
DELETE_ALL_DUPLICATES = 120
CONNECTIONS = 16
WARMUP_AGREE = 0.1  # warm-up ends when a run is no more than 10% faster than the best before
WARMUP_LIMIT = 8  # or after this many runs


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
    alone_on_every_server: bool  # single-operation workloads on the bare handler and peers too
    warmup_seconds: int  # one discarded run per server before the first workload
    layer_rounds: int  # the per-layer costs (bench/layers.py): rounds, each a figure
    layer_pairs: int  # pairs of batches (whole app, variant) per variant per round


FULL = Settings(seconds=5, reps=3, sizes=(1_000, 100_000, 1_000_000), latency_requests=450,
                latency_seconds=2, scale_reps=5, startup_reps=5, reset_reps=50,
                alone_on_every_server=True, warmup_seconds=3, layer_rounds=16,
                layer_pairs=20)
SMOKE = Settings(seconds=1, reps=1, sizes=(1_000, 5_000), latency_requests=100,
                 latency_seconds=1, scale_reps=1, startup_reps=1, reset_reps=5,
                 alone_on_every_server=False, warmup_seconds=0, layer_rounds=2,
                 layer_pairs=2)
SECTIONS = ("throughput", "layers", "scale", "startup")


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


@dataclass
class Target:
    """A server under test and how a run drives it."""
    server: Server
    emulator: bool = False  # a fakeshift: each run seeds an account of its own first
    strip_prefix: str = ""  # Prism routes on the document's paths
    checked: bool = False  # its answers must be 2xx (a plan or stub of ours is broken if not)
    after_run: Callable[[Server], dict] | None = None


def _wiremock_after_run(server: Server) -> dict:
    """The entries WireMock's journal holds after a run (it is on: every request is one), then
    empties it, so that no run pays for the ones before (fakeshift's journal is bounded)."""
    client = Client(server.port)
    try:
        listing, _took = client.expect("GET", "/__admin/requests?limit=1")
        client.expect("DELETE", "/__admin/requests")
    finally:
        client.close()
    if listing.get("requestJournalDisabled"):
        raise HarnessError("WireMock's request journal is off; it must run as it ships")
    return {"journal_entries": listing["meta"]["total"]}


def start_targets(targets: dict[str, Target], prism_spec: Path | None, require_peers: bool,
                  results: dict) -> dict[str, str]:
    """Into `targets`, fakeshift (twice), the bare handler and every peer that can be
    installed, all started before any is waited for (the caller stops them, whatever
    happens); returns, per peer left out, why."""
    notes: dict[str, str] = {}
    machine = results["machine"]
    targets[report.EMULATOR] = Target(start_fakeshift("fakeshift"), emulator=True, checked=True)
    targets[report.ACCESS_LOG_OFF] = Target(
        start_fakeshift("fakeshift-no-access-log", "--access-log", "false"), emulator=True,
        checked=True)
    targets[report.BARE] = Target(start_bare(), checked=True)
    tools = ensure_node_tools(["prism", "wiremock", "mockoon"])
    if prism_spec is None:
        notes[report.PRISM] = "openapi/blueshift.yaml is missing, so Prism was skipped"
    elif tools["prism"][0] is None:
        notes[report.PRISM] = tools["prism"][1]
    else:
        machine["prism"] = node_tool_version("prism")
        targets[report.PRISM] = Target(start_prism(tools["prism"][0], prism_spec),
                                       strip_prefix=prism_prefix(prism_spec))
    jar, why = tools["wiremock"]
    java, java_why = ensure_java() if jar is not None else (None, "")
    if jar is None or java is None:
        notes[report.WIREMOCK] = why or java_why
    else:
        machine["wiremock"] = node_tool_version("wiremock")
        machine["java"] = tool_version([java, "-version"])
        root = write_wiremock_root(processes.work_dir / "wiremock")
        targets[report.WIREMOCK] = Target(start_wiremock(java, jar, root), checked=True,
                                          after_run=_wiremock_after_run)
    cli, why = tools["mockoon"]
    if cli is None:
        notes[report.MOCKOON] = why
    else:
        machine["mockoon"] = node_tool_version("mockoon")
        port = free_port()
        environment = write_mockoon_environment(processes.work_dir / "mockoon.json", port)
        targets[report.MOCKOON] = Target(start_mockoon(cli, environment, port), checked=True)
    if require_peers and notes:
        raise HarnessError("--require-peers: " + "; ".join(f"{name}: {note}"
                                                           for name, note in notes.items()))
    return notes


def throughput(settings: Settings, wrk: str, prism_spec: Path | None, chosen: list[str],
               results: dict, require_peers: bool = False) -> None:
    workloads = [("mixed", OPERATIONS)] + [(operation, (operation,)) for operation in OPERATIONS]
    workloads = [(name, operations) for name, operations in workloads if name in chosen]
    targets: dict[str, Target] = {}
    try:
        results["peer_notes"] = start_targets(targets, prism_spec, require_peers, results)
        for name, target in targets.items():
            # A JVM or node on a busy 2-core machine may take a while.
            target.server.wait_ready(timeout=60 if target.emulator else 180)
        rows: dict[str, dict] = {}
        warmed: set[str] = set()
        # The mixed workload, which the targets name, last: by then a JIT has long compiled
        # what the stubs run (WireMock's JVM keeps getting faster for minutes on a busy
        # machine), whatever its warm-up missed.
        for name, operations in sorted(workloads, key=lambda workload: workload[0] == "mixed"):
            names = list(targets)
            if name != "mixed":
                names.remove(report.ACCESS_LOG_OFF)
                if not settings.alone_on_every_server:
                    names = [report.EMULATOR]
            requests, counts = plan(operations, settings.seconds * PLAN_RATE)
            plans: dict[str, Path] = {}
            for target_name in names:
                prefix = targets[target_name].strip_prefix
                if prefix not in plans:
                    plans[prefix] = write_plan(requests, processes.work_dir /
                                               f"plan-{name}{'-' if prefix else ''}"
                                               f"{prefix.strip('/').replace('/', '-')}.txt",
                                               prefix)
            for target_name in names:
                if settings.warmup_seconds and target_name not in warmed:
                    target = targets[target_name]
                    results.setdefault("warmup", {})[target_name] = _warm_up(
                        settings, wrk, target, target_name, name, counts,
                        plans[target.strip_prefix])
                warmed.add(target_name)
            runs: dict[str, list[Run]] = {target_name: [] for target_name in names}
            for rep in range(settings.reps):
                # Rotate who goes first, so warm-up and drift do not favour one server.
                order = names[rep % len(names):] + names[:rep % len(names)]
                for target_name in order:
                    progress(f"throughput {name} rep {rep + 1}/{settings.reps}: {target_name}")
                    target = targets[target_name]
                    runs[target_name].append(_one_run(wrk, target, target_name, name, rep,
                                                      counts, plans[target.strip_prefix],
                                                      settings.seconds))
            rows[name] = report.throughput_row(name, runs)
        results["throughput"] = [rows[name] for name, _operations in workloads]
    finally:
        for target in targets.values():
            target.server.stop()


def _warm_up(settings: Settings, wrk: str, target: Target, name: str, workload: str,
             counts: dict, plan_file: Path) -> list[float]:
    """Discarded runs until the rate stops climbing: a run no more than WARMUP_AGREE above
    the best before it (at most WARMUP_LIMIT runs). A JIT (WireMock's JVM, node's V8 under
    Prism and Mockoon) compiles its hot paths first, and takes longer to on a busy machine.
    The rates, for the record."""
    rates: list[float] = []
    for attempt in range(WARMUP_LIMIT):
        progress(f"warm-up {workload} {attempt + 1}: {name}")
        run = _one_run(wrk, target, name, workload, f"warm-up-{attempt}", counts, plan_file,
                       settings.warmup_seconds)
        if rates and run.rate <= max(rates) * (1 + WARMUP_AGREE):
            rates.append(run.rate)
            break
        rates.append(run.rate)
    return rates


def _one_run(wrk, target: Target, name: str, workload: str, rep, counts: dict,
             plan_file: Path, seconds: int) -> Run:
    server = target.server
    key = f"bench-{workload}-{rep}-{server.port}".replace(" ", "")
    client = Client(server.port) if target.emulator else None
    if client:
        client.expect("POST", f"/_fakeshift/accounts/{key}/seed", seed_fragment(counts))
    try:
        run = run_wrk(wrk, server.url, plan_file, authorization(key), seconds,
                      CONNECTIONS)
    finally:
        if client:
            client.expect("DELETE", f"/_fakeshift/accounts/{key}")
            client.close()
    if target.after_run is not None:
        run.extra.update(target.after_run(server))
    if target.checked and run.non_2xx > run.requests * 0.01:
        raise HarnessError(f"{name} answered {run.status_summary()} on {workload}: the plan, "
                           f"its seed or the stub is broken (see {server.log_path})")
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


# ---- 4. what each layer of a request costs ---------------------------------------------------

def layers(settings: Settings, results: dict) -> None:
    """bench/layers.py in a process of its own (no server or wrk running beside it)."""
    out = processes.work_dir / "layers.json"
    command = [sys.executable, "-m", "bench.layers", "--rounds", str(settings.layer_rounds),
               "--pairs", str(settings.layer_pairs), "--out", str(out),
               "--log", str(processes.work_dir / "layers-access.log")]
    progress(f"per-layer costs: {settings.layer_rounds} rounds of {settings.layer_pairs} "
             "pairs of batches per variant")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          check=False)
    if done.returncode != 0:
        raise HarnessError(f"bench.layers failed ({done.returncode}): {done.stderr[-1500:]}")
    results["layers"] = json.loads(out.read_text())


# ---- the command ------------------------------------------------------------------------------

def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "load_average": os.getloadavg()[0],
    }


def _commit() -> str:
    """The commit measured, "+changes" when the work tree differs from it under fakeshift/."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=False,
                              capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fakeshift"], cwd=ROOT,
                               check=False,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" +changes" if dirty else "")


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
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--require-peers", action="store_true",
                        help="fail when a peer (Prism, WireMock, Mockoon) cannot be installed or "
                             "run, instead of leaving it out (CI)")
    parser.add_argument("--sizes", help="comma-separated profile counts for the scale section "
                                        "(overrides the mode's)")
    parser.add_argument("--workloads", default="mixed," + ",".join(OPERATIONS),
                        help="comma-separated throughput workloads (default: all)")
    parser.add_argument("--reps", type=int, help="repetitions (overrides the mode's)")
    parser.add_argument("--seconds", type=int, help="seconds per throughput run (overrides)")
    args = parser.parse_args(argv)
    settings = replace(SMOKE if args.smoke else FULL,
                       **{name: getattr(args, name) for name in ("reps", "seconds")
                          if getattr(args, name) is not None})
    if args.sizes:
        try:
            settings = replace(settings, sizes=tuple(int(s.replace("_", ""))
                                                     for s in args.sizes.split(",")))
        except ValueError:
            parser.error("--sizes takes comma-separated whole numbers")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(workloads) - {"mixed", *OPERATIONS}:
        parser.error(f"unknown workloads; choose from mixed, {', '.join(OPERATIONS)}")
    out = args.out or (OUT / "smoke.md" if args.smoke else BENCH / "results.md")
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    processes.work_dir = args.work or OUT / ("smoke" if args.smoke else "full")
    processes.work_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "mode": "smoke" if args.smoke else "full",
                     "settings": asdict(settings), "sections": [s for s in SECTIONS
                                                                if s in sections]}
    if not args.smoke:
        # A full run made lighter (--reps, --seconds, --sizes, fewer sections or workloads)
        # says so at the top of its report.
        results["reduced"] = [f"{name} {getattr(settings, name)} (full: {getattr(FULL, name)})"
                              for name in ("reps", "seconds", "sizes")
                              if getattr(settings, name) != getattr(FULL, name)]
        results["reduced"] += [f"sections: {section} left out" for section in SECTIONS
                               if section not in sections]
        if set(workloads) != {"mixed", *OPERATIONS}:
            results["reduced"].append(f"workloads: {', '.join(workloads)} only")
    try:
        wrk = ensure_wrk()
        results["machine"]["wrk"] = tool_version([wrk, "--version"])
        spec = args.prism_spec if args.prism_spec.exists() else None
        steps = {"throughput": lambda: throughput(settings, wrk, spec, workloads, results,
                                                  args.require_peers),
                 "layers": lambda: layers(settings, results),
                 "scale": lambda: scale(settings, wrk, results),
                 "startup": lambda: startup(settings, results)}
        results["section_seconds"] = {}
        for section in SECTIONS:
            if section in sections:
                started = time.perf_counter()
                steps[section]()
                results["section_seconds"][section] = round(time.perf_counter() - started, 1)
    except HarnessError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(results))
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(out.read_text())
    progress(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
