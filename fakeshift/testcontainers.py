"""fakeshift's image as a testcontainers-python container (`pip install 'fakeshift[testcontainers]'`).

    from fakeshift.testcontainers import FakeshiftContainer

    with FakeshiftContainer(scenario="tests/shop.yaml",
                            faults=["delete_customer:status=503,first=2"],
                            settings={"deletion_delay": "0"}) as fakeshift:
        app = MyApp(blueshift_url=fakeshift.base_url)
        ...
        assert fakeshift.journal(status="5xx")["count"] == 2
        fakeshift.advance_clock(by="2h")
        fakeshift.reset()

Started, it is ready (`GET /_fakeshift/ready` answered 200: the scenario is loaded). The control
plane is the stdlib FakeshiftClient (`.control`); reset(), journal(), violations() and
advance_clock() are its calls, for the one server in the container.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HttpWaitStrategy

from .client import ClockSnapshot, FakeshiftClient, JournalPage, ViolationsPage

# The tag tests/test_container.py builds the repository's Dockerfile as.
DEFAULT_IMAGE = "localhost/fakeshift:test"
PORT = 8080
SCENARIOS_DIRECTORY = "/scenarios"
# FAKESHIFT_FAULTS and FAKESHIFT_RATE_LIMITS hold several specs separated by this.
SPEC_SEPARATOR = ";"


def fakeshift_environment(*, scenario: str | Path | None = None,
                          faults: Iterable[str | Mapping[str, Any]] = (),
                          rate_limits: Iterable[str] = (), admin_token: str | None = None,
                          settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The FAKESHIFT_* variables for these arguments. `settings` names any `fakeshift serve`
    flag (`deletion_delay`, `strict-contract`, ...); booleans become true or false."""
    environment = {f"FAKESHIFT_{name.upper().replace('-', '_')}": _setting(value)
                   for name, value in (settings or {}).items()}
    if scenario is not None:
        environment["FAKESHIFT_SCENARIO"] = f"{SCENARIOS_DIRECTORY}/{Path(scenario).name}"
    if admin_token is not None:
        environment["FAKESHIFT_ADMIN_TOKEN"] = admin_token
    for variable, specs in (("FAKESHIFT_FAULTS", faults), ("FAKESHIFT_RATE_LIMITS", rate_limits)):
        texts = [spec if isinstance(spec, str) else json.dumps(spec) for spec in specs]
        if any(SPEC_SEPARATOR in text for text in texts):
            raise ValueError(f"{variable} separates its specs with {SPEC_SEPARATOR!r}, so one "
                             f"cannot contain it: {next(t for t in texts if SPEC_SEPARATOR in t)}")
        if texts:
            environment[variable] = SPEC_SEPARATOR.join(texts)
    return environment


def _setting(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class FakeshiftContainer(DockerContainer):
    """The fakeshift image on a free port of the Docker host, ready when started.

    `scenario` is a file on this machine, mounted read-only into /scenarios (it must be readable
    by the image's uid 10001); `faults` are fault rules (the `--fault` one-line form or a dict)
    and `rate_limits` `--rate-limit` specs, installed at start and on every reset; `settings`
    any other `fakeshift serve` flags, as FAKESHIFT_* variables."""

    def __init__(self, image: str = DEFAULT_IMAGE, *, scenario: str | Path | None = None,
                 faults: Iterable[str | Mapping[str, Any]] = (), rate_limits: Iterable[str] = (),
                 admin_token: str | None = None, settings: Mapping[str, Any] | None = None,
                 startup_timeout: float = 60, **kwargs: Any):
        # Checked before the Docker client connects, so a mistake is named at once.
        environment = fakeshift_environment(scenario=scenario, faults=faults,
                                            rate_limits=rate_limits, admin_token=admin_token,
                                            settings=settings)
        scenario_path = None if scenario is None else Path(scenario).resolve()
        if scenario_path is not None and not scenario_path.is_file():
            raise FileNotFoundError(f"scenario file {scenario_path} does not exist")
        super().__init__(image, **kwargs)
        self.with_exposed_ports(PORT)
        self.with_envs(**environment)
        if scenario_path is not None:
            self.with_volume_mapping(str(scenario_path),
                                     f"{SCENARIOS_DIRECTORY}/{scenario_path.name}", "ro")
        # Readiness answers 503 until the scenario is loaded, and needs no admin token.
        self.waiting_for(HttpWaitStrategy(PORT, "/_fakeshift/ready")
                         .with_startup_timeout(startup_timeout).with_poll_interval(0.1))

    @property
    def base_url(self) -> str:
        """Where the emulator answers, e.g. http://localhost:32768 (Blueshift's API is under
        /api/v1/, the control plane under /_fakeshift/)."""
        host = self.get_container_host_ip()
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        return f"http://{host}:{self.get_exposed_port(PORT)}"

    @property
    def control(self) -> FakeshiftClient:
        """The control-plane client, with the admin token if the container was given one (as
        `admin_token`, a setting or with_env)."""
        return FakeshiftClient(self.base_url, admin_token=self.env.get("FAKESHIFT_ADMIN_TOKEN"))

    def reset(self, to: str = "scenario") -> dict:
        """Back to the scenario ("scenario") or to nothing ("empty"): every account, the clock,
        fault rules, rate limits and the journal."""
        return self.control.reset(to)

    def journal(self, **filters: Any) -> JournalPage:
        """The requests the emulator has seen, filtered as FakeshiftClient.journal."""
        return self.control.journal(**filters)

    def violations(self, account: str | None = None) -> ViolationsPage:
        """Where clients broke the Blueshift contract (every account when None)."""
        return self.control.violations(account)

    def advance_clock(self, seconds: float | None = None, *,
                      by: str | None = None) -> ClockSnapshot:
        """Move the virtual clock forward: `advance_clock(90)` or `advance_clock(by="2h")`."""
        return self.control.advance(seconds, by=by)
