"""The `fakeshift` command. Every `serve` flag also reads an environment variable FAKESHIFT_<NAME>
(the flag wins), so a container is configured with environment variables alone."""

from __future__ import annotations

import argparse
import os
import sys

from .config import DEFAULT_DELETION_DELAY, Config
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
    p = sub.add_parser("serve", help="run the emulator on waitress",
                       description="Run the emulator. Every flag has an environment variable "
                                   "FAKESHIFT_<FLAG> (e.g. FAKESHIFT_PORT).")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="[FAKESHIFT_HOST] default 127.0.0.1")
    p.add_argument("--port", type=int, default=_env("PORT", "8080"),
                   help="[FAKESHIFT_PORT] 0 picks a free port and prints it; default 8080")
    p.add_argument("--threads", type=int, default=_env("THREADS", "8"),
                   help="[FAKESHIFT_THREADS] waitress worker threads; default 8")
    p.add_argument("--scenario", default=_env("SCENARIO"),
                   help="[FAKESHIFT_SCENARIO] YAML scenario loaded at start and on reset")
    p.add_argument("--deletion-delay", type=_duration,
                   default=_env("DELETION_DELAY", str(DEFAULT_DELETION_DELAY)),
                   help="[FAKESHIFT_DELETION_DELAY] time from delete/forget to purge, e.g. 2h, "
                        "90s, 0 (immediate); default 2h")
    p.add_argument("--group-delete-users-default", type=_boolean,
                   default=_env("GROUP_DELETE_USERS_DEFAULT", "true"),
                   help="[FAKESHIFT_GROUP_DELETE_USERS_DEFAULT] what an omitted delete_users "
                        "means on group delete; default true")
    p.add_argument("--api-key", action="append", dest="api_keys",
                   help="[FAKESHIFT_API_KEYS, comma-separated] accept only these keys: "
                        "KEY[:write|read][@ACCOUNT]; repeatable. Default: any key, each its own "
                        "account")
    p.add_argument("--admin-token", default=_env("ADMIN_TOKEN"),
                   help="[FAKESHIFT_ADMIN_TOKEN] require this token on /_fakeshift/ calls")
    p.add_argument("--max-body-bytes", type=_size, default=_env("MAX_BODY_BYTES", "1m"),
                   help="[FAKESHIFT_MAX_BODY_BYTES] largest Blueshift request body; default 1m")
    p.add_argument("--access-log", type=_boolean, default=_env("ACCESS_LOG", "true"),
                   help="[FAKESHIFT_ACCESS_LOG] one log line per request; default true")
    p.set_defaults(run=_run_serve)


def config_from_args(args: argparse.Namespace) -> Config:
    keys = args.api_keys
    if keys is None:
        keys = [k.strip() for k in _env("API_KEYS", "").split(",") if k.strip()]
    return Config(host=args.host, port=args.port, threads=args.threads, scenario=args.scenario,
                  deletion_delay=args.deletion_delay,
                  group_delete_users_default=args.group_delete_users_default,
                  api_keys=tuple(keys), admin_token=args.admin_token,
                  max_body_bytes=args.max_body_bytes, access_log=args.access_log)


def _run_serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .server import configure_logging, serve

    config = config_from_args(args)
    try:
        # Read and check the scenario before listening, so a bad file fails at once.
        scenario = Scenario.from_file(config.scenario) if config.scenario else None
        app = create_app(config, load_scenario=False)
    except (ScenarioError, ValueError) as exc:
        print(f"fakeshift: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.access_log)
    return serve(app, config.host, config.port, config.threads, scenario, config.access_log)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fakeshift", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
