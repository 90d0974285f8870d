"""The running emulator's state, without HTTP: config, clock, store, keys and loaded scenario.

The Flask app holds one of these; the pytest plugin and the control client reach the same object.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from .auth import ApiKey, KeyRing
from .clock import VirtualClock
from .config import Config
from .models import Settings, Store
from .scenario import Scenario


class Emulator:
    def __init__(self, config: Config):
        self.config = config
        self.clock = VirtualClock()
        self.base_settings = Settings(
            deletion_delay=config.deletion_delay,
            group_delete_users_default=config.group_delete_users_default,
            max_accounts=config.max_accounts,
            max_profiles_per_account=config.max_profiles_per_account,
        )
        self.store = Store(self.clock, replace(self.base_settings))
        self.keyring = KeyRing([ApiKey.parse(spec) for spec in config.api_keys],
                               config.admin_token)
        self.scenario: Scenario | None = None
        # Not ready until the scenario (if any) is loaded: a sidecar must not take traffic early.
        self.ready = threading.Event()
        self._errors_lock = threading.Lock()
        self.internal_errors = 0

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
            vars(self.store.settings).update(vars(settings))
            if use_scenario is not None:
                use_scenario.apply(self.store)

    def count_internal_error(self) -> None:
        with self._errors_lock:
            self.internal_errors += 1
