"""What each cross-cutting layer of a Blueshift request costs, in microseconds per request,
measured from outside fakeshift (nothing in fakeshift/ changes for it).

The app is built the way `fakeshift serve` builds it (its own argument parser's defaults, then
`create_app`, then the access log its request pipeline writes, as `fakeshift.server.listen`
sets it) and driven in this process by a minimal WSGI driver: prepared environs, no sockets, no
threads, so waitress and the GIL are out of the figure and only the app's own work is left. The
layers are found in the request pipeline (fakeshift/pipeline.py) by the names of the methods
that do their work (LAYERS below).

Two figures per layer, from the mixed workload's requests on a seeded account:

- inside: time spent in the layer's own methods, from counters wrapped around each of them;
- saved when bypassed: µs per request of the whole app, minus the same with that layer's
  methods replaced by ones that do nothing (but for NEEDED: the handler reads the caller; and
  PASSING_ON hand back the response they are given).

Every variant (the whole app timed, each layer bypassed, the bare Flask handler) is measured
against the whole app in pairs of small batches, one of each in turn, a few milliseconds apart,
so that both halves of a pair meet the same machine: on a shared 2-core machine the cost of a
request drifts by a fifth from one second to the next, far more than a layer costs. Each round
sums its pairs; a figure is the median over the rounds. Times are the process's CPU time (a
batch that waited for the core is not charged for it); the garbage collector runs between
rounds, not within them, so its pauses are in no layer's figure.

"The rest" (whole request minus every layer inside) is Flask's request context, routing, the
handler and the domain, and the pipeline's own few lines (transport faults among them: two
comparisons when no fault is on).

`python -m bench.layers --rounds 10 --pairs 10 --out layers.json`
"""

from __future__ import annotations

import argparse
import functools
import gc
import io
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Layer name -> the request pipeline's methods that do its work. Where fakeshift's request
# path is rearranged, this is the one place to update.
LAYERS: dict[str, tuple[str, ...]] = {
    "readiness and size guard": ("guard",),
    "contract check": ("check_contract",),
    "auth": ("caller", "authenticate"),
    "rate limit": ("limit_rate",),
    "fault decision": ("decide_fault", "finish"),
    "journal": ("journal_entry",),
    "access log": ("log_access",),
}
# Kept when their layer is bypassed: what they return, the request needs.
NEEDED = frozenset({"caller"})
# Bypassed by handing back the response they are given.
PASSING_ON = frozenset({"finish"})
BASE = "whole app"
# CPU time, not wall time: on a shared machine another process taking the core for a while
# would otherwise land in whichever batch or layer was running. Batches count every thread of
# this process (the access log writes its lines from a thread of its own); a layer's segments
# count the request's thread.
BATCH_CLOCK = time.process_time
SEGMENT_CLOCK = time.thread_time
BARE = "bare Flask handler"
TIMED = "whole app, timed"
BATCH_CYCLES = 2  # a batch: this many cycles of the mixed workload's operations


# ---- the app, as `fakeshift serve` builds it ------------------------------------------------

def serve_config():
    from fakeshift.cli import build_parser, config_from_args
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "0"])
    return config_from_args(args)


def _nothing(*_args, **_kwargs) -> None:
    return None


def _passing_on(response, *_args):
    return response


@dataclass
class Stack:
    """The built app and its request pipeline, whose methods a variant replaces."""
    app: object
    pipeline: object
    located: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, log_stream) -> Stack:
        from fakeshift import server
        from fakeshift.app import create_app

        config = serve_config()
        app = create_app(config)
        pipeline = app.wsgi_app
        if config.access_log:
            pipeline.access_log = server.AccessLog(server.LogWriter(log_stream),
                                                   config.log_probes)
        stack = cls(app, pipeline)
        for layer, names in LAYERS.items():
            found = [f"Pipeline.{name}" for name in names if callable(getattr(pipeline, name,
                                                                              None))]
            if found:
                stack.located[layer] = found
        return stack

    def variant(self, without: frozenset[str] = frozenset(),
                timers: Timers | None = None) -> dict:
        """The pipeline's methods to replace: those of the layers in `without` by ones that do
        nothing; with `timers`, every other layer's timed. Nothing changes until activate()."""
        replaced = {}
        for layer, names in LAYERS.items():
            for name in names:
                method = getattr(type(self.pipeline), name, None)
                if method is None:
                    continue
                if layer in without and name not in NEEDED:
                    replaced[name] = _passing_on if name in PASSING_ON else _nothing
                elif timers is not None:
                    replaced[name] = timers.method(layer, getattr(self.pipeline, name))
        return replaced

    def activate(self, variant: dict):
        """Make the pipeline `variant`, and return the WSGI callable to drive."""
        for names in LAYERS.values():
            for name in names:
                self.pipeline.__dict__.pop(name, None)
        self.pipeline.__dict__.update(variant)
        return self.pipeline


class Timers:
    """A clock around each method, summed per layer."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def method(self, layer: str, function):
        clock, seconds = SEGMENT_CLOCK, self.seconds

        @functools.wraps(function)
        def timed(*args):
            started = clock()
            try:
                return function(*args)
            finally:
                seconds[layer] = seconds.get(layer, 0.0) + clock() - started
        return timed

    def settle(self) -> dict[str, float]:
        """Seconds per layer since the last settle(), and every counter back to zero."""
        settled = dict(self.seconds)
        self.seconds.clear()
        return settled


# ---- driving it -----------------------------------------------------------------------------

def prepare(requests: list[tuple], authorization: str) -> list[tuple[dict, bytes]]:
    """(environ without wsgi.input, body) per request, built before any timing starts."""
    from werkzeug.test import EnvironBuilder
    prepared = []
    for method, target, body in requests:
        path, _, query = target.partition("?")
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Authorization": authorization, "Host": "127.0.0.1"}
        builder = EnvironBuilder(path=path, query_string=query, method=method, data=data,
                                 headers=headers,
                                 content_type="application/json" if body is not None else None)
        environ = builder.get_environ()
        builder.close()
        environ.pop("wsgi.input", None)
        environ["REMOTE_ADDR"] = "127.0.0.1"
        prepared.append((environ, data))
    return prepared


def drive(wsgi, prepared: list[tuple[dict, bytes]]) -> tuple[float, dict[str, int]]:
    """Seconds to answer every prepared request in turn, and the answers by status."""
    statuses: dict[str, int] = {}
    seen: list[str] = []

    def start_response(status, headers, exc_info=None):
        seen.append(status)
        return _discard

    clock, new_input = BATCH_CLOCK, io.BytesIO
    started = clock()
    for template, body in prepared:
        environ = dict(template)
        environ["wsgi.input"] = new_input(body)
        result = wsgi(environ, start_response)
        try:
            for _chunk in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    took = clock() - started
    for status in seen:
        code = status[:3]
        statuses[code] = statuses.get(code, 0) + 1
    return took, statuses


def _discard(_data) -> None:
    return None


def timer_cost(samples: int = 20000) -> float:
    """Seconds one timed method adds to what encloses it (a timed no-op)."""
    timed = Timers().method("cost", _nothing)
    best = {}
    for name, call in (("plain", _nothing), ("timed", timed)):
        runs = []
        for _ in range(5):
            started = BATCH_CLOCK()
            for _ in range(samples):
                call(None, None)
            runs.append(BATCH_CLOCK() - started)
        best[name] = min(runs) / samples
    return max(0.0, best["timed"] - best["plain"])


def measure(rounds: int, pairs: int, log_path: Path) -> dict:
    from bench.bare_app import create_bare_app
    from bench.workloads import OPERATIONS, authorization, plan, seed_fragment

    batch = BATCH_CYCLES * len(OPERATIONS)
    with open(log_path, "w") as log_stream:
        stack = Stack.build(log_stream)
        layers = [layer for layer in LAYERS if layer in stack.located]
        compared = [TIMED] + [f"without {layer}" for layer in layers] + [BARE]
        per_round = len(compared) * pairs * 2 * batch
        warm_up = 20 * batch
        requests, counts = plan(OPERATIONS, warm_up + rounds * per_round)
        key = "layers"
        client = stack.app.test_client()
        seeded = client.post(f"/_fakeshift/accounts/{key}/seed", json=seed_fragment(counts))
        if seeded.status_code != 200:
            raise RuntimeError(f"seeding answered {seeded.status_code}: {seeded.get_data()}")
        prepared = prepare(requests, authorization(key))
        batches = iter([prepared[i:i + batch] for i in range(warm_up, len(prepared), batch)])
        bare = create_bare_app()
        base = stack.variant()
        timers = Timers()
        variants = {TIMED: stack.variant(timers=timers)}
        variants.update((f"without {layer}", stack.variant(frozenset({layer})))
                        for layer in layers)
        statuses: dict[str, dict[str, int]] = {name: {} for name in [BASE, *compared]}
        # Per round: µs per request of the whole app beside each variant, and of the variant.
        beside: dict[str, list[float]] = {name: [] for name in compared}
        alone: dict[str, list[float]] = {name: [] for name in compared}
        inside: dict[str, list[float]] = {}

        def run(name: str) -> float:
            if name == BARE:
                wsgi = bare
            else:
                wsgi = stack.activate(base if name == BASE else variants[name])
            took, answered = drive(wsgi, next(batches))
            for code, count in answered.items():
                statuses[name][code] = statuses[name].get(code, 0) + count
            return took

        drive(stack.activate(base), prepared[:warm_up])  # imports, caches, first calls
        timers.settle()
        # What is already built is frozen out of the collector's reach; it runs between
        # rounds, untimed (a full collection over the store costs milliseconds).
        gc.collect()
        gc.freeze()
        try:
            for round_number in range(rounds):
                shift = round_number % len(compared)
                gc.disable()
                try:
                    for name in compared[shift:] + compared[:shift]:
                        whole = variant = 0.0
                        for pair in range(pairs):
                            # Alternate which goes first, so neither always follows the other.
                            if pair % 2:
                                variant += run(name)
                                whole += run(BASE)
                            else:
                                whole += run(BASE)
                                variant += run(name)
                        beside[name].append(whole / (pairs * batch) * 1e6)
                        alone[name].append(variant / (pairs * batch) * 1e6)
                finally:
                    gc.enable()
                for layer, seconds in timers.settle().items():
                    inside.setdefault(layer, []).append(seconds / (pairs * batch) * 1e6)
                gc.collect()
        finally:
            gc.unfreeze()
            stack.activate(base)  # as built
    overhead_us = timer_cost() * 1e6
    return _summarise(stack, layers, beside, alone, inside, statuses, overhead_us,
                      rounds, pairs, batch)


def _summarise(stack, layers, beside, alone, inside, statuses, overhead_us, rounds, pairs,
               batch) -> dict:
    median = statistics.median

    def difference(name: str) -> float:
        return median(w - v for w, v in zip(beside[name], alone[name]))

    def spread(name: str) -> float:
        """Half the interquartile range of the rounds' differences: the figure's resolution."""
        values = [w - v for w, v in zip(beside[name], alone[name])]
        if len(values) < 4:
            return max(values) - min(values) if len(values) > 1 else 0.0
        q1, _q2, q3 = statistics.quantiles(values, n=4)
        return (q3 - q1) / 2

    whole = median(value for values in beside.values() for value in values)
    rows = []
    for layer in LAYERS:
        row = {"layer": layer, "located": stack.located.get(layer, [])}
        if layer in layers:
            row["saved_us"] = difference(f"without {layer}")
            row["saved_spread_us"] = spread(f"without {layer}")
            # A method's timer sits outside it but for a clock read, which is left in.
            row["inside_us"] = median(inside.get(layer, [0.0]))
        rows.append(row)
    inside_total = sum(row.get("inside_us", 0.0) for row in rows)
    return {
        "rounds": rounds,
        "pairs": pairs,
        "batch": batch,
        "requests_per_variant": rounds * pairs * batch,
        "whole_us": whole,
        "bare_us": median(alone[BARE]),
        "whole_minus_bare_us": difference(BARE),
        "timers_cost_us": -difference(TIMED),
        "rest_us": whole - inside_total,
        "timer_overhead_us": overhead_us,
        "layers": rows,
        "statuses": statuses,
        "per_round_us": {"beside": beside, "alone": alone},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="rounds (each a figure)")
    parser.add_argument("--pairs", type=int, default=10,
                        help="pairs of batches (whole app, variant) per variant per round")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON (else stdout)")
    parser.add_argument("--log", type=Path, default=Path(os.devnull),
                        help="where the access log's lines go (default: /dev/null)")
    args = parser.parse_args(argv)
    figures = measure(args.rounds, args.pairs, args.log)
    text = json.dumps(figures, indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
