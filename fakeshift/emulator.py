"""The running emulator's state, without HTTP: config, clock, store, keys and loaded scenario.

The Flask app holds one of these; the pytest plugin and the control client reach the same object.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from .auth import ApiKey, KeyRing
from .clock import VirtualClock
from .config import DEFAULT_DELETION_DELAY, DEFAULT_GROUP_DELETE_USERS, Config
from .contract import ViolationLog
from .faults import FaultRules, parse_spec
from .journal import Journal
from .models import Settings, Store
from .ratelimit import RateLimiter, parse_limit_specs
from .scenario import Scenario


class Emulator:
    def __init__(self, config: Config):
        self.config = config
        self.clock = VirtualClock()
        self.base_settings = Settings(
            deletion_delay=DEFAULT_DELETION_DELAY,
            group_delete_users_default=DEFAULT_GROUP_DELETE_USERS,
            max_accounts=config.max_accounts,
            max_profiles_per_account=config.max_profiles_per_account,
            max_events_per_account=config.max_events_per_account,
            max_profiles_total=config.max_profiles_total,
        )
        # Settings given explicitly (flags, environment) win over the scenario's.
        self.explicit_settings = {
            name: getattr(config, name)
            for name in ("deletion_delay", "group_delete_users_default")
            if getattr(config, name) is not None
        }
        self.store = Store(self.clock, replace(self.base_settings))
        self.keyring = KeyRing([ApiKey.parse(spec) for spec in config.api_keys],
                               config.admin_token)
        self.scenario: Scenario | None = None
        # Not ready until the scenario (if any) is loaded: a sidecar must not take traffic early.
        self.ready = threading.Event()
        self._errors_lock = threading.Lock()
        self.internal_errors = 0
        self.journal = Journal(self.clock, config.journal_size, config.journal_body_bytes)
        self.faults = FaultRules(self.clock, config.fault_seed, config.max_fault_rules)
        self.rate_limits = RateLimiter(self.clock)
        # Faults and limits from flags and environment: checked now, so a bad one stops the start.
        self.startup_faults = [parse_spec(spec) for spec in config.faults]
        self.faults.import_rules(self.startup_faults)
        self.startup_rate_limits = parse_limit_specs(config.rate_limits)
        self.rate_limits.configure(self.startup_rate_limits)
        self.violations = ViolationLog(self.clock)

    def check_buildable(self, scenario: Scenario) -> None:
        """Build `scenario` into a scratch store, raising ScenarioError if it cannot be built.

        The schema cannot catch everything (a group member no profile matches, a profile limit)
        and loading starts by clearing the state, so a runtime load checks first: twice the
        work, but a refused scenario leaves the state as it was."""
        scenario.apply(Store(VirtualClock(), scenario.settings(self.base_settings)))

    def load(self, scenario: Scenario | None) -> None:
        """Make `scenario` the state the server resets to, and reset to it now."""
        with self.store.exclusive():
            self.scenario = scenario
            self.reset("scenario")

    def reset(self, to: str = "scenario") -> None:
        """Back to the loaded scenario ("scenario") or to nothing at all ("empty")."""
        if to not in ("scenario", "empty"):
            raise ValueError("to must be 'scenario' or 'empty'")
        with self.store.exclusive():
            self.store.clear()
            self.clock.reset()
            use_scenario = self.scenario if to == "scenario" else None
            settings = use_scenario.settings(self.base_settings) if use_scenario else self.base_settings
            # Mutate in place: accounts hold a reference to the store's settings.
            vars(self.store.settings).update(vars(settings), **self.explicit_settings)
            if use_scenario is not None:
                use_scenario.apply(self.store)
            self._reset_chaos(use_scenario)
            self.violations.clear()

    def reset_account(self, name: str, to: str = "scenario") -> None:
        """One account back to what the loaded scenario holds for it ("scenario"; nothing when
        it holds none) or to nothing ("empty"), and everything kept for it alone cleared: its
        own clock, journal entries, the fault rules that target it (the scenario's included:
        a server reset brings those back) and its header-rule counters, its rate-limit buckets,
        and its contract violations. No other account's state,
        time, rules or entries change."""
        if to not in ("scenario", "empty"):
            raise ValueError("to must be 'scenario' or 'empty'")
        with self.store.exclusive():
            self.store.drop_account(name)
            self.clock.account(name).reset()
            if to == "scenario" and self.scenario is not None:
                self.scenario.apply_account(self.store, name)
        self.faults.clear(name)
        self.rate_limits.clear(name)
        self.journal.clear(name)
        self.violations.clear(name)

    def _reset_chaos(self, scenario: Scenario | None) -> None:
        """Runtime fault rules go; the start-up ones (flags first, then the scenario's) come back
        with fresh counters and generators. Rate limits: the flags', else the scenario's. The
        journal is emptied, as WireMock's reset does, so each test reads only its own requests."""
        document = scenario.document if scenario is not None else {}
        self.faults.import_rules([*self.startup_faults, *document.get("faults", [])])
        self.rate_limits.configure(self.startup_rate_limits or document.get("rate_limits", {}))
        self.journal.clear()

    def count_internal_error(self) -> None:
        with self._errors_lock:
            self.internal_errors += 1
