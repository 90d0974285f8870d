"""Server configuration: one object, filled from defaults, then the environment, then the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .models import MAX_PROFILES_TOTAL

DEFAULT_DELETION_DELAY = 7200.0  # Blueshift: deletion "can take a couple of hours"
DEFAULT_GROUP_DELETE_USERS = True
# With a state file: periodic snapshots only, or also an append-only log (fakeshift/appendlog.py).
DURABILITY_MODES = ("snapshot", "aof")


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 8
    scenario: str | None = None
    # None: the scenario's setting, else the default. A value given here (a flag) beats both.
    deletion_delay: float | None = None
    # The seed page says both "if omitted, users are also deleted" and "Default: false";
    # the behavioural prose wins (True), see README, "Decisions".
    group_delete_users_default: bool | None = None
    api_keys: tuple[str, ...] = ()  # "KEY[:ROLE][@ACCOUNT]"; empty: any key is its own account
    admin_token: str | None = None
    max_body_bytes: int = 1 << 20
    admin_max_body_bytes: int = 256 << 20
    max_accounts: int = 10_000
    max_profiles_per_account: int = 2_000_000
    max_profiles_total: int = MAX_PROFILES_TOTAL  # all accounts together
    max_events_per_account: int = 1_000  # past it the oldest recorded event is dropped
    # Headers past this get a 431 naming this limit; past server.WAITRESS_HEADER_FACTOR times
    # this, waitress refuses them before the app runs (still JSON, without the limit's name).
    max_header_bytes: int = 64 << 10
    state_file: str | None = None  # see fakeshift/persistence.py
    save_interval: float = 30.0  # 0: no periodic saves, only the one on stop
    durability: str = "snapshot"  # one of DURABILITY_MODES
    fsync_interval: float = 1.0  # aof: the append log is fsynced this often (seconds, > 0)
    access_log: bool = True
    log_probes: bool = False  # health and readiness probes in the access log
    # Connections: past connection_limit waitress stops accepting until some close. A connection
    # idle (no request in progress) for idle_timeout seconds is closed; a request whose headers
    # take longer than header_timeout seconds, or that stalls mid-way for idle_timeout, gets a
    # 408 and is closed, so slow or silent clients cannot hold every connection for long.
    connection_limit: int = 1000
    idle_timeout: float = 10.0
    header_timeout: float = 10.0
    # Refuse (400) requests that break openapi/blueshift.yaml instead of only recording them.
    strict_contract: bool = False
    # Faults and rate limits installed at start and restored on reset (README, "faults"):
    # compact specs ("delete_customer:status=503,first=2"), JSON strings or rule dicts.
    faults: tuple = ()
    fault_seed: int = 0  # seeds every rule without a seed of its own
    max_fault_rules: int = 1000
    # Identifiers at fail.fakeshift.test (or customer_ids starting fakeshift-fail-) inject the
    # fault they name (fakeshift/magic.py).
    magic_inputs: bool = True
    rate_limits: tuple = ()  # "[OPERATION:]rate=R,burst=B[,retry_after]" or JSON
    journal_size: int = 10_000
    journal_body_bytes: int = 4096
    drill: str | None = None  # a drill file played inside the server once it is ready
    drill_speed: float = 1.0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: dict) -> "Config":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**values)
