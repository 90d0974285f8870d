"""The `fakeshift` command. Every `serve` flag also reads an environment variable FAKESHIFT_<NAME>
(the flag wins), so a container is configured with environment variables alone."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from . import __version__, appendlog, contract_check, journal_command, parity, persistence
from .config import DURABILITY_MODES, Config
from .drill import Drill, DrillError, HttpControl, format_summary, play, play_in_server
from .scenario import Scenario, ScenarioError, parse_duration


def _env(name: str, default=None):
    return os.environ.get(f"FAKESHIFT_{name}", default)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _boolean(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from exc
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small: at least 1")
    return value


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is too short: more than 0 (e.g. 1s, 200ms)")
    return seconds


def _durability(text: str) -> str:
    if text not in DURABILITY_MODES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(DURABILITY_MODES)}")
    return text


def _whole_seconds(text: str) -> float:
    # waitress counts its connection timeouts in whole seconds, and checks them once a second.
    seconds = _duration(text)
    if seconds < 1 or seconds != int(seconds):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds, at least 1s")
    return seconds


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = str(text).strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 1048576, 512k, 1m)") from exc


def _add_serve(sub) -> None:
    # A short usage: an error message then stays two lines instead of twenty.
    p = sub.add_parser("serve", help="run the emulator on waitress",
                       usage="%(prog)s [--FLAG VALUE ...] (--help lists them)",
                       description="Run the emulator. Every flag has an environment variable "
                                   "FAKESHIFT_<FLAG> (e.g. FAKESHIFT_PORT).")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="[FAKESHIFT_HOST] default 127.0.0.1")
    p.add_argument("--port", type=_port, default=_env("PORT", "8080"),
                   help="[FAKESHIFT_PORT] 0 picks a free port and prints it; default 8080")
    p.add_argument("--threads", type=_at_least_one, default=_env("THREADS", "8"),
                   help="[FAKESHIFT_THREADS] waitress worker threads; 2 more serve only the "
                        "control plane; default 8")
    p.add_argument("--scenario", default=_env("SCENARIO"),
                   help="[FAKESHIFT_SCENARIO] YAML scenario loaded at start and on reset")
    p.add_argument("--deletion-delay", type=_duration, default=_env("DELETION_DELAY"),
                   help="[FAKESHIFT_DELETION_DELAY] time from delete/forget to purge, e.g. 2h, "
                        "90s, 0 (immediate); beats the scenario's setting; default 2h")
    p.add_argument("--group-delete-users-default", type=_boolean,
                   default=_env("GROUP_DELETE_USERS_DEFAULT"),
                   help="[FAKESHIFT_GROUP_DELETE_USERS_DEFAULT] what an omitted delete_users "
                        "means on group delete; beats the scenario's setting; default true")
    p.add_argument("--api-key", action="append", dest="api_keys",
                   help="[FAKESHIFT_API_KEYS, comma-separated] accept only these keys: "
                        "KEY[:write|read][@ACCOUNT]; repeatable. Default: any key, each its own "
                        "account")
    p.add_argument("--admin-token", default=_env("ADMIN_TOKEN"),
                   help="[FAKESHIFT_ADMIN_TOKEN] require this token on /_fakeshift/ calls")
    p.add_argument("--max-body-bytes", type=_size, default=_env("MAX_BODY_BYTES", "1m"),
                   help="[FAKESHIFT_MAX_BODY_BYTES] largest Blueshift request body; default 1m")
    p.add_argument("--admin-max-body-bytes", type=_size,
                   default=_env("ADMIN_MAX_BODY_BYTES", "256m"),
                   help="[FAKESHIFT_ADMIN_MAX_BODY_BYTES] largest control-plane request body "
                        "(scenarios, seeds); default 256m")
    p.add_argument("--max-header-bytes", type=_size, default=_env("MAX_HEADER_BYTES", "64k"),
                   help="[FAKESHIFT_MAX_HEADER_BYTES] largest request header block (JSON 431 "
                        "past it); default 64k")
    p.add_argument("--max-accounts", type=int, default=_env("MAX_ACCOUNTS", "10000"),
                   help="[FAKESHIFT_MAX_ACCOUNTS] accounts the server holds (429 past it); "
                        "default 10000")
    p.add_argument("--max-profiles-per-account", type=int,
                   default=_env("MAX_PROFILES_PER_ACCOUNT", "2000000"),
                   help="[FAKESHIFT_MAX_PROFILES_PER_ACCOUNT] profiles one account holds, pending "
                        "deletions included (429 past it); default 2000000")
    p.add_argument("--max-profiles-total", type=int,
                   default=_env("MAX_PROFILES_TOTAL", "2000000"),
                   help="[FAKESHIFT_MAX_PROFILES_TOTAL] profiles all accounts hold together "
                        "(429 past it); default 2000000")
    p.add_argument("--max-events-per-account", type=int,
                   default=_env("MAX_EVENTS_PER_ACCOUNT", "1000"),
                   help="[FAKESHIFT_MAX_EVENTS_PER_ACCOUNT] events one account keeps; past it "
                        "the oldest is dropped; default 1000")
    p.add_argument("--state-file", default=_env("STATE_FILE"),
                   help="[FAKESHIFT_STATE_FILE] load the state from this file at start and save "
                        "it there periodically and on stop")
    p.add_argument("--save-interval", type=_duration, default=_env("SAVE_INTERVAL", "30s"),
                   help="[FAKESHIFT_SAVE_INTERVAL] time between periodic saves of --state-file; "
                        "0: none, only the save on stop; default 30s")
    p.add_argument("--durability", type=_durability, default=_env("DURABILITY", "snapshot"),
                   help="[FAKESHIFT_DURABILITY] with --state-file: snapshot (a crash loses the "
                        "changes since the last save) or aof (every change is also appended to "
                        "<file>.aof.N before it is answered and replayed at start; a crash loses "
                        "at most --fsync-interval); default snapshot")
    p.add_argument("--fsync-interval", type=_positive_duration,
                   default=_env("FSYNC_INTERVAL", "1s"),
                   help="[FAKESHIFT_FSYNC_INTERVAL] with --durability aof: how often the log is "
                        "fsynced; default 1s")
    p.add_argument("--access-log", type=_boolean, default=_env("ACCESS_LOG", "true"),
                   help="[FAKESHIFT_ACCESS_LOG] one log line per request; default true")
    p.add_argument("--log-probes", type=_boolean, nargs="?", const=True,
                   default=_env("LOG_PROBES", "false"),
                   help="[FAKESHIFT_LOG_PROBES] access-log health and readiness probes too; "
                        "default false")
    p.add_argument("--strict-contract", type=_boolean, nargs="?", const=True,
                   default=_env("STRICT_CONTRACT", "false"),
                   help="[FAKESHIFT_STRICT_CONTRACT] refuse (400, X-Fakeshift-Violation) requests "
                        "that break openapi/blueshift.yaml instead of only recording them; "
                        "default false")
    _add_connection_flags(p)
    _add_chaos_flags(p)
    p.set_defaults(run=_run_serve)


def _add_connection_flags(p) -> None:
    p.add_argument("--connection-limit", type=_at_least_one,
                   default=_env("CONNECTION_LIMIT", "1000"),
                   help="[FAKESHIFT_CONNECTION_LIMIT] open connections at once; past it new ones "
                        "wait; default 1000")
    p.add_argument("--idle-timeout", type=_whole_seconds, default=_env("IDLE_TIMEOUT", "10s"),
                   help="[FAKESHIFT_IDLE_TIMEOUT] a connection with nothing received for this "
                        "long is closed (408 mid-request); default 10s")
    p.add_argument("--header-timeout", type=_whole_seconds,
                   default=_env("HEADER_TIMEOUT", "10s"),
                   help="[FAKESHIFT_HEADER_TIMEOUT] a request's headers must arrive within this "
                        "(408 and close otherwise); default 10s")


def _env_list(name: str, separator: str) -> list[str]:
    return [item.strip() for item in _env(name, "").split(separator) if item.strip()]


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError("the speed must be greater than 0")
    return value


def _add_chaos_flags(p) -> None:
    p.add_argument("--fault", action="append", dest="faults",
                   help="[FAKESHIFT_FAULTS, separated by ';'] a fault rule installed at start and "
                        "on reset, e.g. 'delete_customer:status=503,first=2' or JSON; repeatable")
    p.add_argument("--fault-seed", type=int, default=_env("FAULT_SEED", "0"),
                   help="[FAKESHIFT_FAULT_SEED] seeds every fault rule without its own seed; "
                        "default 0")
    p.add_argument("--max-fault-rules", type=int, default=_env("MAX_FAULT_RULES", "1000"),
                   help="[FAKESHIFT_MAX_FAULT_RULES] most fault rules at once; default 1000")
    p.add_argument("--magic-inputs", type=_boolean, default=_env("MAGIC_INPUTS", "true"),
                   help="[FAKESHIFT_MAGIC_INPUTS] identifiers at fail.fakeshift.test, or "
                        "customer_ids starting fakeshift-fail-, inject the fault they name; "
                        "default true")
    p.add_argument("--rate-limit", action="append", dest="rate_limits",
                   help="[FAKESHIFT_RATE_LIMITS, separated by ';'] a leaky bucket per account "
                        "and operation: '[OPERATION:]rate=R,burst=B[,retry_after]'; repeatable; "
                        "default none")
    p.add_argument("--journal-size", type=int, default=_env("JOURNAL_SIZE", "10000"),
                   help="[FAKESHIFT_JOURNAL_SIZE] requests the journal keeps (newest); "
                        "default 10000")
    p.add_argument("--journal-body-bytes", type=_size, default=_env("JOURNAL_BODY_BYTES", "4k"),
                   help="[FAKESHIFT_JOURNAL_BODY_BYTES] bytes of each body the journal keeps; "
                        "default 4k")
    p.add_argument("--drill", default=_env("DRILL"),
                   help="[FAKESHIFT_DRILL] play this drill file inside the server once ready")
    p.add_argument("--drill-speed", type=_speed, default=_env("DRILL_SPEED", "1"),
                   help="[FAKESHIFT_DRILL_SPEED] play the drill this many times faster; default 1")


def _add_drill(sub) -> None:
    p = sub.add_parser("drill", help="play a chaos drill against a running server",
                       description="Play a drill (scenarios/drills/*.yaml) against a running "
                                   "server through its control plane, then print a summary "
                                   "of the traffic from the request journal.")
    p.add_argument("file", help="the drill file (YAML)")
    p.add_argument("--base-url", default=_env("BASE_URL", "http://127.0.0.1:8080"),
                   help="[FAKESHIFT_BASE_URL] the server; default http://127.0.0.1:8080")
    p.add_argument("--admin-token", default=_env("ADMIN_TOKEN"),
                   help="[FAKESHIFT_ADMIN_TOKEN] the server's admin token, if it has one")
    p.add_argument("--speed", type=_speed, default=1.0,
                   help="play this many times faster (e.g. 60: a minute-long step takes 1s)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=_run_drill)


def _run_drill(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        drill = Drill.from_file(args.file)
        summary = play(drill, HttpControl(args.base_url, args.admin_token), args.speed)
    except DrillError as exc:
        print(f"fakeshift: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary), flush=True)
    return 0


def config_from_args(args: argparse.Namespace) -> Config:
    keys = args.api_keys
    if keys is None:
        keys = [k.strip() for k in _env("API_KEYS", "").split(",") if k.strip()]
    return Config(host=args.host, port=args.port, threads=args.threads, scenario=args.scenario,
                  deletion_delay=args.deletion_delay,
                  group_delete_users_default=args.group_delete_users_default,
                  api_keys=tuple(keys), admin_token=args.admin_token,
                  max_body_bytes=args.max_body_bytes, access_log=args.access_log,
                  admin_max_body_bytes=args.admin_max_body_bytes,
                  max_header_bytes=args.max_header_bytes, max_accounts=args.max_accounts,
                  max_profiles_per_account=args.max_profiles_per_account,
                  max_events_per_account=args.max_events_per_account,
                  max_profiles_total=args.max_profiles_total,
                  state_file=args.state_file, save_interval=args.save_interval,
                  durability=args.durability, fsync_interval=args.fsync_interval,
                  log_probes=args.log_probes, connection_limit=args.connection_limit,
                  idle_timeout=args.idle_timeout, header_timeout=args.header_timeout,
                  strict_contract=args.strict_contract,
                  faults=tuple(args.faults if args.faults is not None
                               else _env_list("FAULTS", ";")),
                  fault_seed=args.fault_seed, max_fault_rules=args.max_fault_rules,
                  magic_inputs=args.magic_inputs,
                  rate_limits=tuple(args.rate_limits if args.rate_limits is not None
                                    else _env_list("RATE_LIMITS", ";")),
                  journal_size=args.journal_size, journal_body_bytes=args.journal_body_bytes,
                  drill=args.drill, drill_speed=args.drill_speed)


def _run_serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .server import configure_logging, serve

    config = config_from_args(args)
    try:
        # Read and check the scenario before listening, so a bad file fails at once.
        scenario = Scenario.from_file(config.scenario) if config.scenario else None
        # Likewise a state file that is locked, unwritable, corrupt or foreign: one line and
        # exit 2, never a traceback.
        if config.durability == "aof" and not config.state_file:
            raise ValueError("--durability aof needs --state-file (its log is kept beside it)")
        state_file = persistence.StateFile(config.state_file) if config.state_file else None
        state = state_file.read() if state_file else None
        append_log = (appendlog.AppendLog(state_file.path, state, config.fsync_interval)
                      if config.durability == "aof" else None)
        if state_file is not None and append_log is None:
            appendlog.check_snapshot_mode(state_file.path, state)
        drill = Drill.from_file(config.drill) if config.drill else None
        app = create_app(config, load_scenario=False)
        if append_log is not None:
            append_log.install(app)
    except (ScenarioError, ValueError) as exc:
        print(f"fakeshift: error: {exc}", file=sys.stderr)
        return 2
    log_writer = configure_logging()
    if drill is not None:
        play_in_server(app.extensions["fakeshift"], drill, config.drill_speed)
    status = serve(app, scenario, log_writer, state_file=state_file, state=state,
                   append_log=append_log)
    log_writer.close()
    sys.stderr.flush()
    # Exit now: a normal interpreter exit would wait on a worker still running a request past
    # the stop budget, and free a large store object by object, both for seconds.
    os._exit(status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fakeshift", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_drill(sub)
    contract_check.add_parser(sub)
    parity.add_parity_command(sub)
    journal_command.add_parser(sub)
    for command_parser in sub.choices.values():
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        # argparse would blame the top-level command and print its usage; the mistyped flag
        # belongs to the subcommand, whose usage lists the right ones.
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.run(args)
