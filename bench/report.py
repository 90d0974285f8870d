"""Turning runs into medians, side-by-side ratios, target checks and the markdown report."""

from __future__ import annotations

import statistics

from .load import Run

EMULATOR = "fakeshift"
BARE = "bare Flask/waitress"
PRISM = "Prism"


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def throughput_row(workload: str, runs: dict[str, list[Run]]) -> dict:
    """Medians per server, and ratios taken repetition by repetition (servers measured side by
    side in the same repetition) before the median is taken."""
    row = {"workload": workload, "servers": {}, "ratios": {}}
    for server, server_runs in runs.items():
        statuses: dict[str, int] = {}
        for run in server_runs:
            for status, count in run.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        row["servers"][server] = {
            "rate": _median(r.rate for r in server_runs),
            "p50_ms": _median(r.p50_ms for r in server_runs),
            "p99_ms": _median(r.p99_ms for r in server_runs),
            "requests": sum(r.requests for r in server_runs),
            "non_2xx": sum(r.non_2xx for r in server_runs),
            "statuses": statuses,
            "wraps": sum(r.wraps for r in server_runs),
            "socket_errors": sum(r.socket_errors for r in server_runs),
        }
    for server in runs:
        for baseline in (BARE, PRISM):
            if server == baseline or baseline not in runs or server in (BARE, PRISM):
                continue
            pairs = zip(runs[server], runs[baseline])
            row["ratios"][f"{server} / {baseline}"] = _median(a.rate / b.rate for a, b in pairs)
    return row


def targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every target of the issue; met is None when not measured."""
    checks = []
    mixed = next((r for r in results.get("throughput", []) if r["workload"] == "mixed"), None)
    if mixed:
        bare = mixed["ratios"].get(f"{EMULATOR} / {BARE}")
        prism = mixed["ratios"].get(f"{EMULATOR} / {PRISM}")
        p99 = mixed["servers"][EMULATOR]["p99_ms"]
        checks.append(("mixed >= 0.75x bare Flask/waitress", _x(bare), _at_least(bare, 0.75)))
        checks.append(("mixed >= 1.3x Prism", _x(prism), _at_least(prism, 1.3)))
        checks.append(("mixed p99 <= 20 ms at 16 connections", f"{p99:.1f} ms", p99 <= 20))
    scale = results.get("scale", [])
    if len(scale) >= 2:
        small, large = scale[0], scale[-1]
        for operation in ("forget", "delete"):
            ratio = large[f"{operation}_p50_ms"] / small[f"{operation}_p50_ms"]
            checks.append((f"{operation} p50 at {large['size']:,} <= 1.25x at {small['size']:,}",
                           _x(ratio), ratio <= 1.25))
        per_profile = large["rss_per_profile_bytes"]
        checks.append((f"RSS per profile <= 1 KiB (at {large['size']:,})",
                       f"{per_profile:.0f} B", per_profile <= 1024))
        fastest = min(large["seed_seconds"], large["scenario_ready_seconds"])
        seconds = fastest * 1_000_000 / large["size"]
        checks.append(("seeding 1,000,000 profiles <= 20 s (fastest path)",
                       f"{fastest:.1f} s for {large['size']:,}"
                       + ("" if large["size"] == 1_000_000 else f" ({seconds:.1f} s per million)"),
                       seconds <= 20))
    startup = results.get("startup")
    if startup:
        for label in ("serve", "plugin"):
            value = startup[f"{label}_start_ms"]
            checks.append((f"start to ready <= 1 s ({label})", f"{value:.0f} ms", value <= 1000))
        checks.append(("per-test reset <= 5 ms", f"{startup['reset_ms']:.2f} ms",
                       startup["reset_ms"] <= 5))
    return checks


def _x(ratio: float | None) -> str:
    return "not measured" if ratio is None else f"{ratio:.2f}x"


def _at_least(value: float | None, floor: float) -> bool | None:
    return None if value is None else value >= floor


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(results: dict) -> str:
    machine = results["machine"]
    settings = results["settings"]
    lines = [
        f"# fakeshift benchmarks ({results['mode']} run)",
        "",
        f"{machine['date']}; {machine['cores']} cores; Python {machine['python']}; "
        f"{machine['platform']}; {machine.get('wrk', 'wrk')}"
        + (f"; Prism {machine['prism']}" if machine.get("prism") else "") + ".",
        "Every server runs in its own process on 127.0.0.1 with its default settings (fakeshift: "
        "`fakeshift serve`, 8 waitress threads, access log on), all driven by the same wrk "
        "(1 thread, 16 connections) in the same run. Figures are medians of "
        f"{settings['reps']} repetitions of {settings['seconds']} s; ratios are taken "
        "repetition by repetition, servers side by side, then the median.",
        "",
    ]
    rows = results.get("throughput")
    if rows:
        lines += _throughput_table(rows)
        if results.get("prism_note"):
            lines += [f"Prism: {results['prism_note']}", ""]
    scale = results.get("scale")
    if scale:
        lines += _scale_table(scale, settings)
    startup = results.get("startup")
    if startup:
        lines += [
            "## Start-up, reset, fresh account",
            "",
            "| measure | median |",
            "|---|---|",
            f"| `fakeshift serve`: process start to first ready answer | "
            f"{startup['serve_start_ms']:.0f} ms |",
            f"| pytest plugin's server (its LiveServer, in a fresh process): start to "
            f"ready | {startup['plugin_start_ms']:.0f} ms |",
            f"| per-test reset, `POST /_fakeshift/reset` round trip "
            f"({startup['reset_samples']} samples; p95 {startup['reset_p95_ms']:.2f} ms) | "
            f"{startup['reset_ms']:.2f} ms |",
            f"| first call with a new API key (creates its account) | "
            f"{startup['fresh_account_first_call_ms']:.2f} ms |",
            f"| the same call again on that account | "
            f"{startup['same_account_next_call_ms']:.2f} ms |",
            "",
        ]
    checks = targets(results)
    if checks:
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for target, measured, met in checks:
            verdict = "not measured" if met is None else ("yes" if met else "**NO**")
            lines.append(f"| {target} | {measured} | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def _throughput_table(rows: list[dict]) -> list[str]:
    servers = [name for name in rows[0]["servers"]]
    lines = ["## Throughput and latency, 16 connections", "",
             "req/s, p50 ms, p99 ms per server; non-2xx answers are counted over all "
             "repetitions (the plans are built so that none are expected from fakeshift).", "",
             "| workload | server | req/s | p50 ms | p99 ms | answers | non-2xx |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        for server in servers:
            figures = row["servers"].get(server)
            if figures is None:
                continue
            non_2xx = str(figures["non_2xx"])
            if figures["non_2xx"]:
                non_2xx += " (" + ", ".join(f"{s}: {c}" for s, c in sorted(
                    figures["statuses"].items()) if not s.startswith("2")) + ")"
            lines.append(f"| {row['workload']} | {server} | {figures['rate']:.0f} | "
                         f"{_ms(figures['p50_ms'])} | {_ms(figures['p99_ms'])} | "
                         f"{figures['requests']} | {non_2xx} |")
    lines += ["", "| workload | ratio (req/s) |", "|---|---|"]
    for row in rows:
        for name, ratio in row["ratios"].items():
            lines.append(f"| {row['workload']} | {name}: {_x(ratio)} |")
    lines.append("")
    return lines


def _scale_table(scale: list[dict], settings: dict) -> list[str]:
    lines = ["## Scale: one account with N profiles", "",
             f"forget and delete: {settings['latency_requests']} requests on distinct profiles "
             f"at 16 connections, median of {settings['scale_reps']} repetitions. Seeding: "
             "`POST /_fakeshift/accounts/NAME/seed` with `generate` (one call, round trip). "
             "RSS per profile: the server's RSS after seeding minus before, over N. Delete-all: "
             "the three calls that schedule 120 duplicates (50 + 50 + 20).", ""]
    largest = scale[-1]
    lines += [f"Seeding {largest['size']:,} profiles the other way, `fakeshift serve --scenario` "
              "with a `generate` entry: process start to ready in "
              f"{largest['scenario_ready_seconds']:.2f} s (the seed call's answer lists every new "
              "uuid; the scenario's does not).", "",
             "| profiles | forget p50 | forget p99 | delete p50 | delete p99 | seed | "
             "RSS after | RSS per profile | delete-all of 120 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in scale:
        lines.append(f"| {row['size']:,} | {row['forget_p50_ms']:.1f} ms | "
                     f"{row['forget_p99_ms']:.1f} ms | {row['delete_p50_ms']:.1f} ms | "
                     f"{row['delete_p99_ms']:.1f} ms | {row['seed_seconds']:.2f} s | "
                     f"{row['rss_after_mib']:.0f} MiB | {row['rss_per_profile_bytes']:.0f} B | "
                     f"{row['delete_all_ms']:.1f} ms |")
    lines.append("")
    return lines
