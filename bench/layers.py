"""What each cross-cutting layer of a Blueshift request costs, in microseconds per request,
measured from outside fakeshift (nothing in fakeshift/ changes for it).

The app is built the way `fakeshift serve` builds it (its own argument parser's defaults, then
`create_app`, then the access log around it as `fakeshift.server.listen` puts it) and driven
in this process by a minimal WSGI driver: prepared environs, no sockets, no threads, so
waitress and the GIL are out of the figure and only the app's own work is left. The layers are
found in the built app by name (LAYERS below): its Flask hooks and the WSGI wrappers around it.

Two figures per layer, from the mixed workload's requests on a seeded account:

- inside: time spent in the layer's own hooks and wrappers, from counters wrapped around each
  of them (a wrapper's time excludes the app it wraps; the timers' own cost is measured and
  taken off);
- saved when bypassed: µs per request of the whole app, minus the same with that layer's hooks
  and wrappers taken out (Flask's per-hook dispatch included).

Every variant (the whole app timed, each layer bypassed, the bare Flask handler) is measured
against the whole app in pairs of small batches, one of each in turn, a few milliseconds apart,
so that both halves of a pair meet the same machine: on a shared 2-core machine the cost of a
request drifts by a fifth from one second to the next, far more than a layer costs. Each round
sums its pairs; a figure is the median over the rounds. Times are the process's CPU time (a
batch that waited for the core is not charged for it); the garbage collector runs between
rounds, not within them, so its pauses are in no layer's figure.

Bypassing one layer can move work to another: without the contract check, auth resolves the
credentials itself; without the journal's hook, its wrapper records less. The two columns are
read together, and "the rest" (whole request minus every layer inside) is Flask's request
context, routing, the handler and the domain.

`python -m bench.layers --rounds 10 --pairs 10 --out layers.json`
"""

from __future__ import annotations

import argparse
import copy
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

# Layer name -> the names of its Flask hook functions and WSGI wrapper classes in the app.
# Where fakeshift's request path is rearranged, this is the one place to update.
LAYERS: dict[str, dict[str, tuple[str, ...]]] = {
    "readiness and size guard": {"hooks": ("guard_request",)},
    "contract check": {"hooks": ("check_contract", "name_violation")},
    "auth": {"hooks": ("authenticate",)},
    "rate limit": {"hooks": ("limit_rate",)},
    "fault decision": {"hooks": ("inject_fault", "finish_fault")},
    "journal": {"hooks": ("note_request",), "wrappers": ("JournalMiddleware",)},
    "access log": {"wrappers": ("AccessLog",)},
    "transport faults": {"wrappers": ("TransportFaults",)},
}
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


def _layer_of(thing) -> str | None:
    name = getattr(thing, "__name__", None) or type(thing).__name__
    for layer, parts in LAYERS.items():
        if name in parts.get("hooks", ()) or name in parts.get("wrappers", ()):
            return layer
    return None


def _label(thing) -> str:
    name = getattr(thing, "__name__", None) or type(thing).__name__
    module = getattr(thing, "__module__", None) or type(thing).__module__
    return f"{module}.{name}"


# ---- the app, as `fakeshift serve` builds it ------------------------------------------------

def serve_config():
    from fakeshift.cli import build_parser, config_from_args
    args = build_parser().parse_args(["serve", "--host", "127.0.0.1", "--port", "0"])
    return config_from_args(args)


@dataclass
class Stack:
    """The built app taken apart: its hooks, its WSGI wrappers (outermost first), the Flask
    core under them, and the access log that `fakeshift serve` puts around it all."""
    app: object
    before: list
    after: list
    wrappers: list
    core: object
    access_log: object | None
    located: dict[str, list[str]] = field(default_factory=dict)
    unlisted: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, log_stream) -> Stack:
        from fakeshift import server
        from fakeshift.app import create_app

        config = serve_config()
        app = create_app(config)
        writer = server.LogWriter(log_stream)
        access_log = (server.AccessLog(app, writer, config.log_probes)
                      if config.access_log else None)
        before = list(app.before_request_funcs.get(None, ()))
        after = list(app.after_request_funcs.get(None, ()))
        wrappers, node = [], app.wsgi_app
        # Wrappers keep what they wrap as .app; the Flask core is the bound Flask.wsgi_app.
        while hasattr(node, "app") and not hasattr(node, "__self__"):
            wrappers.append(node)
            node = node.app
        stack = cls(app, before, after, wrappers, node, access_log)
        everything = before + after + wrappers + ([access_log] if access_log else [])
        for thing in everything:
            layer = _layer_of(thing)
            if layer is None:
                stack.unlisted.append(_label(thing))
            else:
                stack.located.setdefault(layer, []).append(_label(thing))
        return stack

    def variant(self, without: frozenset[str] = frozenset(),
                timers: Timers | None = None) -> Variant:
        """The app with the layers in `without` taken out; with `timers`, every remaining hook
        and wrapper timed. Nothing changes until activate()."""

        def keep(thing) -> bool:
            return _layer_of(thing) not in without

        def hook(function):
            return timers.hook(function) if timers else function

        before = [hook(f) for f in self.before if keep(f)]
        after = [hook(f) for f in self.after if keep(f)]
        inner = timers.inner(self.core) if timers else self.core
        for wrapper in reversed(self.wrappers):
            if not keep(wrapper):
                continue
            wrapper = copy.copy(wrapper)
            wrapper.app = inner
            inner = timers.wrapper(wrapper, inner) if timers else wrapper
        outer = self.app
        if self.access_log is not None and keep(self.access_log):
            outer = copy.copy(self.access_log)
            outer.app = timers.inner(self.app) if timers else self.app
            if timers:
                outer = timers.wrapper(outer, outer.app)
        return Variant(before, after, inner, outer)

    def activate(self, variant: Variant):
        """Make the app `variant`, and return the WSGI callable to drive."""
        self.app.before_request_funcs[None] = variant.before
        self.app.after_request_funcs[None] = variant.after
        self.app.wsgi_app = variant.wsgi_app
        return variant.outer


@dataclass
class Variant:
    before: list
    after: list
    wsgi_app: object
    outer: object


class Timers:
    """perf_counter around each hook and wrapper, summed per layer (or per unlisted callable).
    A wrapper's own time is its time minus the time of the timed app it wraps (settle())."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.timed: list[_Timed] = []

    def _add(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def hook(self, function):
        key = _layer_of(function) or _label(function)
        clock, add = SEGMENT_CLOCK, self._add

        @functools.wraps(function)
        def timed(*args):
            started = clock()
            try:
                return function(*args)
            finally:
                add(key, clock() - started)
        return timed

    def inner(self, wsgi):
        """What a wrapper wraps, timed so the wrapper's own time can be told apart."""
        timed = _Timed(wsgi, None, None)
        self.timed.append(timed)
        return timed

    def wrapper(self, wrapper, wraps: _Timed):
        timed = _Timed(wrapper, _layer_of(wrapper) or _label(wrapper), wraps)
        self.timed.append(timed)
        return timed

    def settle(self) -> dict[str, float]:
        """Seconds per layer since the last settle(), and every counter back to zero."""
        for timed in self.timed:
            if timed.key is not None:
                self._add(timed.key, timed.seconds - timed.wraps.seconds)
        for timed in self.timed:
            timed.seconds = 0.0
        seconds, self.seconds = self.seconds, {}
        return seconds


class _Timed:
    """A WSGI callable timed on every call (the call itself; bodies are iterated outside)."""

    def __init__(self, app, key: str | None, wraps: _Timed | None):
        self.app, self.key, self.wraps = app, key, wraps
        self.seconds = 0.0

    def __call__(self, environ, start_response):
        started = SEGMENT_CLOCK()
        try:
            return self.app(environ, start_response)
        finally:
            self.seconds += SEGMENT_CLOCK() - started


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
    """Seconds one timed segment adds to what encloses it (a _Timed around a no-op)."""
    def noop(environ, start_response):
        return None

    plain, timed = noop, _Timed(noop, None, None)
    best = {}
    for name, call in (("plain", plain), ("timed", timed)):
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
            # A wrapper's own time holds one timed call (to what it wraps); a hook's timer
            # sits outside it but for a clock read, which is left in.
            segments = sum(1 for part in stack.located[layer] if part.rsplit(".", 1)[-1]
                           in LAYERS[layer].get("wrappers", ()))
            row["inside_us"] = max(0.0, median(inside.get(layer, [0.0]))
                                   - overhead_us * segments)
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
        "unlisted": stack.unlisted,
        "unlisted_inside_us": {key: median(values) for key, values in inside.items()
                               if key not in LAYERS},
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
