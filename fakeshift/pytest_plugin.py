"""pytest plugin (registered through the `pytest11` entry point, so installing fakeshift enables it).

Fixtures:
  fakeshift_config        session  dict of server settings (fakeshift.config.Config fields);
                                   override it in a conftest.py to configure the server.
  make_fakeshift_server   session  the running server: a waitress thread on a free loopback
                                   port, or the server FAKESHIFT_URL names (e.g. a container).
                                   Override it to choose otherwise:
                                   `return ExternalServer("http://127.0.0.1:8080")`.
  fakeshift_server        session  the same server (url, control).
  fakeshift_app           function a fresh in-process WSGI app (no socket), for app.test_client().
  fakeshift               function this test's own account: a new random API key on the shared
                                   server, with its base URL, a control client and its own clock
                                   (advance, freeze, ...). Tests never see each other's data or
                                   move each other's time, and under pytest-xdist each worker has
                                   its own server.

Marker `@pytest.mark.fakeshift_contract` (or ini option `fakeshift_contract = true` for every
test) fails a test whose requests broke the Blueshift contract, as the emulator recorded them.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
from typing import Any

import pytest
import waitress
from waitress import wasyncore

from .app import create_app
from .client import (AccountClockSnapshot, AccountReset, FakeshiftClient, FakeshiftError,
                     SeedResult)

CONTRACT_MARKER = "fakeshift_contract"
# How long the one look at a FAKESHIFT_URL server may take: a wrong address must end the run in
# seconds, not after every test has waited for a server that is not there.
REACH_TIMEOUT = 2.0


class LiveServer:
    """fakeshift served by waitress from a thread of this process, on 127.0.0.1."""

    def __init__(self, config: dict | None = None, threads: int = 4):
        self.app = create_app(config or {})
        self._server = waitress.create_server(self.app, host="127.0.0.1", port=0,
                                              threads=threads, ident="fakeshift")
        self.url = f"http://127.0.0.1:{self._server.effective_port}"
        self.control = FakeshiftClient(self.url, self.app.extensions["fakeshift"].config.admin_token)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fakeshift-live-server",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        # waitress's own run() loops until its socket map is empty, which another thread cannot
        # arrange safely; polling here lets the same thread that serves also close everything.
        server = self._server
        while not self._stopping.is_set():
            wasyncore.loop(timeout=0.5, map=server._map, count=1)
        for channel in list(server._map.values()):
            channel.close()
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._server.pull_trigger()  # wake the poll at once instead of after its timeout
        except OSError:
            # The serving thread woke on its own meanwhile and closed the trigger with
            # everything else: there is nothing left to wake.
            pass
        self._thread.join(timeout=10)

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class ExternalServer:
    """A fakeshift started elsewhere (a container, `fakeshift serve`), for make_fakeshift_server."""

    def __init__(self, url: str, admin_token: str | None = None):
        self.url = url.rstrip("/")
        self.app = None
        self.control = FakeshiftClient(self.url, admin_token)

    def stop(self) -> None:
        """Not ours to stop."""


class FakeshiftAccount:
    """One test's account on the shared server: give `base_url` and `api_key` to the code under
    test, then assert with `state()`, `journal()` and `violations()`.

    Its time is its own: `advance()`, `freeze()`, `unfreeze()` and `set_clock()` move this
    account's clock only (the server clock plus its own offset, or its own frozen moment), so
    tests running in parallel against one server never purge each other's pending deletions."""

    def __init__(self, server, api_key: str):
        self.server = server
        self.base_url = server.url
        self.api_key = api_key
        self.control: FakeshiftClient = server.control

    @property
    def name(self) -> str:
        """In fakeshift's default (open) mode each API key is its own account."""
        return self.api_key

    @property
    def auth(self) -> tuple[str, str]:
        """HTTP Basic credentials as Blueshift wants them (key, empty password), e.g. requests'
        `auth=`."""
        return (self.api_key, "")

    @property
    def headers(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.api_key}:".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def state(self) -> dict[str, Any]:
        return self.control.account(self.name)

    def seed(self, **fragment) -> SeedResult:
        """Keyword arguments of FakeshiftClient.seed (profiles=, lists=, groups=, ...)."""
        return self.control.seed(self.name, **fragment)

    def journal(self, **filters) -> list[dict[str, Any]]:
        return self.control.journal(account=self.name, **filters)["entries"]

    def violations(self) -> list[dict[str, Any]]:
        return self.control.violations(self.name)["violations"]

    def clock(self) -> AccountClockSnapshot:
        return self.control.account_clock(self.name)

    def advance(self, seconds: float | None = None, *,
                by: str | None = None) -> AccountClockSnapshot:
        """Move this account's time forward: `advance(90)` or `advance(by="2h")`."""
        return self.control.advance_account_clock(self.name, seconds, by=by)

    def freeze(self, at: str | None = None) -> AccountClockSnapshot:
        return self.control.freeze_account_clock(self.name, at)

    def unfreeze(self) -> AccountClockSnapshot:
        return self.control.unfreeze_account_clock(self.name)

    def set_clock(self, now: str) -> AccountClockSnapshot:
        return self.control.set_account_clock(self.name, now)

    def reset(self) -> AccountReset:
        """Empty this account again, with its clock, journal entries, fault rules targeting it,
        rate-limit buckets and violations."""
        return self.control.reset_account(self.name, "empty")

    def __repr__(self) -> str:
        return f"<fakeshift account {self.api_key} at {self.base_url}>"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(CONTRACT_MARKER, type="bool", default=False,
                  help="fakeshift: fail every test using the `fakeshift` fixture whose requests "
                       "broke the Blueshift contract")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{CONTRACT_MARKER}: fail the test if its requests to fakeshift broke the "
                   "Blueshift contract (read from /_fakeshift/violations)")


@pytest.fixture(scope="session")
def fakeshift_config() -> dict:
    """Server settings for make_fakeshift_server; override in conftest.py, e.g.
    `return {"deletion_delay": 0}`. Keys are fakeshift.config.Config fields."""
    return {"access_log": False}


@pytest.fixture(scope="session")
def make_fakeshift_server(fakeshift_config):
    """The session's server: in this process, or the one FAKESHIFT_URL names (a container, with
    FAKESHIFT_ADMIN_TOKEN if it has one). Override it to choose otherwise."""
    if os.environ.get("FAKESHIFT_URL"):
        yield _reach(ExternalServer(os.environ["FAKESHIFT_URL"],
                                    os.environ.get("FAKESHIFT_ADMIN_TOKEN")))
    else:
        with LiveServer(fakeshift_config) as server:
            yield server


def _reach(server: ExternalServer) -> ExternalServer:
    """The server FAKESHIFT_URL names, once it is ready; if it cannot be reached, is not a
    fakeshift or never gets ready, the whole run stops with one message saying so."""
    where = f"FAKESHIFT_URL={server.url}"
    probe = FakeshiftClient(server.url, server.control.admin_token, timeout=REACH_TIMEOUT)
    try:
        probe.health()
    except FakeshiftError as exc:
        _stop(f"{where} answered {exc.status} to /_fakeshift/health: is it a fakeshift server? "
              "Give its base URL, e.g. http://127.0.0.1:8080")
    except ValueError as exc:
        _stop(f"{where} is not an http(s) URL ({exc})")
    except OSError as exc:  # refused, unknown host, timed out
        reason = getattr(exc, "reason", exc)  # urllib's URLError wraps the OS error
        _stop(f"{where} cannot be reached ({getattr(reason, 'strerror', None) or reason}); "
              "start the server there, or unset FAKESHIFT_URL to run one in this process")
    try:
        server.control.wait_ready()
    except TimeoutError as exc:
        _stop(f"{where}: {exc} (is it still loading a large scenario?)")
    return server


def _stop(message: str) -> None:
    pytest.exit(f"fakeshift: {message}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def fakeshift_server(make_fakeshift_server):
    """The session's server: `.url`, `.control` (a FakeshiftClient), `.app` (None if external)."""
    return make_fakeshift_server


@pytest.fixture
def fakeshift_app(fakeshift_config):
    """A fresh emulator as a plain WSGI (Flask) app: `fakeshift_app.test_client()`."""
    return create_app(fakeshift_config)


@pytest.fixture
def fakeshift(fakeshift_server):
    """This test's own account (a fresh random API key): `.base_url`, `.api_key`, `.auth`,
    `.headers`, `.control`, `.state()`, `.seed(...)`, `.journal()`, `.violations()`, its own
    clock (`.clock()`, `.advance()`, `.freeze()`, `.unfreeze()`, `.set_clock()`), `.reset()`."""
    account = FakeshiftAccount(fakeshift_server, f"test-{secrets.token_hex(8)}")
    # Create it empty now, so state() answers even if every request of the test was refused.
    account.seed()
    yield account
    # The server clock belongs to the whole server: a test that froze it through `.control`
    # must not freeze the next one. (The account's own clock is dropped with the account.)
    if fakeshift_server.control.clock()["frozen"]:
        fakeshift_server.control.unfreeze()
    # Keep a long session's memory flat (the account's violations and clock go with it); the
    # key is never used again.
    fakeshift_server.control.drop_account(account.name)


def _contract_check_wanted(item: pytest.Item) -> bool:
    return (item.get_closest_marker(CONTRACT_MARKER) is not None
            or item.config.getini(CONTRACT_MARKER))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    outcome = yield
    account = getattr(item, "funcargs", {}).get("fakeshift")
    if isinstance(account, FakeshiftAccount) and _contract_check_wanted(item):
        _fail_on_violations(account)
    return outcome


def _fail_on_violations(account: FakeshiftAccount) -> None:
    try:
        violations = account.violations()
    except FakeshiftError as exc:
        if exc.status == 404:
            pytest.fail(f"the fakeshift server at {account.base_url} does not record contract "
                        "violations (no /_fakeshift/violations); remove the "
                        f"{CONTRACT_MARKER} check or upgrade fakeshift", pytrace=False)
        raise
    if violations:
        lines = [f"  {v.get('method')} {v.get('path')}: {v.get('location')}: {v.get('message')}"
                 f" [{v.get('rule')}]" for v in violations]
        pytest.fail(f"{len(violations)} Blueshift contract violation(s) by this test's client:\n"
                    + "\n".join(lines), pytrace=False)
