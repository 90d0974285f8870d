"""Running wrk with bench/replay.lua and reading the figures it prints."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .processes import BENCH, HarnessError

REPLAY = BENCH / "replay.lua"


@dataclass
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    wraps: int = 0
    socket_errors: int = 0
    extra: dict = field(default_factory=dict)  # what the server said after the run

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not status.startswith("2"))

    def status_summary(self) -> str:
        return " ".join(f"{status}:{count}" for status, count in sorted(self.statuses.items()))


def run_wrk(wrk: str, url: str, plan_file: Path, authorization: str, seconds: int,
            connections: int, threads: int = 1, stop_after: int = 0) -> Run:
    """Replay the plan for `seconds`; with `stop_after`, each wrk thread stops after that many
    answers (the figures are then only latencies: wrk still waits out the duration)."""
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(REPLAY), url, "--", str(plan_file), authorization, str(stop_after),
               str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120,
                          check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise HarnessError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    figures = json.loads(line.removeprefix("BENCH_JSON "))
    if figures["requests"] == 0:
        raise HarnessError(f"wrk got no answers from {url}: {done.stdout.strip()[-500:]}")
    return Run(requests=figures["requests"], seconds=figures["duration_us"] / 1e6,
               p50_ms=figures["p50_us"] / 1000, p99_ms=figures["p99_us"] / 1000,
               statuses=figures["statuses"], wraps=figures["wraps"],
               socket_errors=figures["socket_errors"] + figures["timeouts"])
