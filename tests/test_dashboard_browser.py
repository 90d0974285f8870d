"""The dashboard in a real headless browser: Debian's chromium, driven by Selenium through the
system's chromedriver (given by path, so Selenium Manager never runs and nothing is downloaded),
against real `fakeshift serve` processes that have an admin token.

CI (.ci/run) installs chromium and chromium-driver and exports FAKESHIFT_CI=1, so a missing
browser fails there instead of skipping. Screenshots go to a temporary directory (printed).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,
                                        TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import basic

REQUIRED = os.environ.get("FAKESHIFT_CI") == "1"
TOKEN = "dashboard-test-token"
ADMIN = {"X-Fakeshift-Admin-Token": TOKEN}
JOURNAL_CAP = 10_000
ROWS_SHOWN = 500
# The rows of the requests table as text, one list of cells per row (one call, not one per
# cell); a cell of badges (the marks) as its badges joined with " + ".
ROWS_SCRIPT = """return [...document.querySelectorAll('#requests tbody tr')].map(tr =>
    [...tr.cells].map(td => td.querySelector('.badge')
        ? [...td.querySelectorAll('.badge')].map(badge => badge.textContent).join(' + ')
        : td.textContent));"""
COLUMNS = {name: index for index, name in enumerate(
    ["id", "time", "account", "request", "operation", "status", "ms", "marks"])}


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        message = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root, where chromium's sandbox cannot start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1600,900", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"dashboard screenshots: {directory}")
    return directory


@pytest.fixture
def server(start_server):
    return start_server("--access-log", "false", "--admin-token", TOKEN)


def open_dashboard(browser, server):
    browser.get(f"{server.url}/_fakeshift/ui?token={TOKEN}")
    wait_for(browser, "the first journal poll",
             lambda: browser.execute_script("return window.fakeshiftDashboard.stats.polls") >= 1)


def wait_for(browser, what: str, condition, timeout: float = 5.0, seen=None):
    """condition()'s first true value; on a timeout, an AssertionError naming `what` and
    showing `seen()` (what the page had instead)."""
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.05).until(lambda _: condition())
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}"
                             + (f"; the page shows {seen()!r}" if seen else "")) from None


def table_rows(browser) -> list[list[str]]:
    return browser.execute_script(ROWS_SCRIPT)


def show_view(browser, view: str) -> None:
    click(browser, f".tab[data-view={view}]")


def text_of(browser, selector: str) -> str | None:
    """The element's text as shown, read in one step: views redraw every few seconds, so an
    element found in one call may be gone by the next."""
    return browser.execute_script(
        "const found = document.querySelector(arguments[0]); return found && found.innerText;",
        selector)


def click(browser, selector: str) -> None:
    """A real click (an input event through chromedriver), again if a redraw replaced the
    element between finding and clicking it."""
    def clicked():
        try:
            browser.find_element(By.CSS_SELECTOR, selector).click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    wait_for(browser, f"a click on {selector}", clicked)


def journal_count(server) -> int:
    answer = requests.get(f"{server.url}/_fakeshift/journal?limit=0", headers=ADMIN, timeout=5)
    answer.raise_for_status()
    return answer.json()["count"]


def test_the_page_shows_a_request_just_made_and_what_the_journal_has_of_it(browser, server,
                                                                           screenshots):
    open_dashboard(browser, server)
    # The token was taken once from the address, which no longer shows it.
    assert "token" not in browser.current_url
    requests.post(f"{server.url}/api/v1/customers", headers=basic("alice"),
                  json={"email": "fresh@example.com"}, timeout=5)
    requests.post(f"{server.url}/api/v1/customers/delete?delete_all_matching_customers=true",
                  headers=basic("alice"), json={"email": "fresh@example.com"}, timeout=5)
    rows = wait_for(browser, "the requests in the table",
                    lambda: shown if len(shown := table_rows(browser)) == 2 else None)
    newest = rows[0]
    assert newest[COLUMNS["account"]] == "alice"
    assert newest[COLUMNS["request"]] == ("POST /api/v1/customers/delete"
                                          "?delete_all_matching_customers=true")
    assert (newest[COLUMNS["operation"]], newest[COLUMNS["status"]]) == ("delete_customer", "200")
    # A later poll adds rows on top and leaves the ones there alone (the same elements).
    browser.execute_script("document.querySelector('#requests tbody tr').dataset.kept = 'yes';")
    requests.get(f"{server.url}/api/v1/customers?email=fresh@example.com", headers=basic("alice"),
                 timeout=5)
    wait_for(browser, "the third request", lambda: len(table_rows(browser)) == 3)
    kept = browser.execute_script(
        "return [...document.querySelectorAll('#requests tbody tr')].map(tr => tr.dataset.kept);")
    assert kept == [None, "yes", None]
    click(browser, "#requests tbody tr:nth-child(2)")
    detail = text_of(browser, "#request-detail")
    for shown in ("method\nPOST", "path\n/api/v1/customers/delete",
                  "query\ndelete_all_matching_customers=true", '"email": "fresh@example.com"',
                  "status\n200", "fault\nnone", "contract\nkept", "latency\n"):
        assert shown in detail, shown
    browser.save_screenshot(str(screenshots / "request-detail.png"))
    for view in ("accounts", "violations", "faults", "requests"):
        show_view(browser, view)
    time.sleep(0.5)
    # The page, its polling and its views left the journal as the test's own requests made it;
    # and the browser reported nothing (a refused script, style or fetch would be an error).
    assert journal_count(server) == 3
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_filters_narrow_the_table_by_account_operation_and_status(browser, server):
    for key in ("alice", "bob"):
        requests.post(f"{server.url}/api/v1/customers", headers=basic(key),
                      json={"email": f"{key}@example.com"}, timeout=5)
        requests.get(f"{server.url}/api/v1/customers/00000000-0000-4000-8000-000000000000",
                     headers=basic(key), timeout=5)
    open_dashboard(browser, server)
    assert len(table_rows(browser)) == 4
    filters = {name: browser.find_element(By.CSS_SELECTOR, f"#request-filters [name={name}]")
               for name in ("account", "operation", "status")}

    def shown():
        return sorted((row[COLUMNS["account"]], row[COLUMNS["status"]]) for row in table_rows(browser))

    filters["account"].send_keys("bob")
    wait_for(browser, "bob's requests only", lambda: shown() == [("bob", "200"), ("bob", "404")],
             seen=shown)
    filters["status"].send_keys("4xx")
    wait_for(browser, "bob's 404 only", lambda: shown() == [("bob", "404")], seen=shown)
    filters["account"].clear()
    filters["status"].clear()
    filters["operation"].send_keys("identify")
    wait_for(browser, "the two creations", lambda: shown() == [("alice", "200"), ("bob", "200")],
             seen=shown)
    # The table follows new traffic under the filter, and leaves out what does not match.
    requests.post(f"{server.url}/api/v1/customers", headers=basic("carol"),
                  json={"email": "carol@example.com"}, timeout=5)
    requests.get(f"{server.url}/api/v1/customers?email=carol@example.com", headers=basic("carol"),
                 timeout=5)
    wait_for(browser, "carol's creation", lambda: ("carol", "200") in shown(), seen=shown)
    assert len(shown()) == 3


def test_faults_and_contract_violations_are_marked_and_listed(browser, server, screenshots):
    requests.post(f"{server.url}/_fakeshift/faults", headers=ADMIN, timeout=5,
                  json={"id": "flaky-search", "operation": "search_customers", "status": 503,
                        "first": 2})
    requests.put(f"{server.url}/_fakeshift/rate-limits", headers=ADMIN, timeout=5,
                 json={"operations": {"forget": {"rate": 0.001, "burst": 1}}})
    search = f"{server.url}/api/v1/customers?email=someone@example.com"
    for _ in range(3):
        requests.get(search, headers=basic("shop"), timeout=5)
    requests.post(f"{server.url}/api/v1/customers/forget", headers=basic("shop"),
                  json={"email": "someone@example.com"}, timeout=5)
    requests.post(f"{server.url}/api/v1/customers/forget", headers=basic("shop"),
                  json={"email": "someone@example.com", "emial": "typo"}, timeout=5)
    open_dashboard(browser, server)
    oldest_first = [(row[COLUMNS["request"]].split("?")[0], row[COLUMNS["status"]],
                     row[COLUMNS["marks"]]) for row in reversed(table_rows(browser))]
    searched, forgot = "GET /api/v1/customers", "POST /api/v1/customers/forget"
    # The second forget broke the contract (a typo) and was over the rate limit.
    assert oldest_first[2:] == [
        (searched, "503", "fault flaky-search"), (searched, "503", "fault flaky-search"),
        (searched, "200", ""), (forgot, "200", ""),
        (forgot, "429", "fault rate-limit + contract additionalProperties")]
    violating = browser.find_elements(By.CSS_SELECTOR, "#requests tbody tr.violating")
    faulted = browser.find_elements(By.CSS_SELECTOR, "#requests tbody tr.faulted")
    assert (len(violating), len(faulted)) == (1, 3)
    click(browser, "#requests tbody tr.violating")
    assert "broken: additionalProperties" in text_of(browser, "#request-detail")
    browser.save_screenshot(str(screenshots / "requests.png"))

    show_view(browser, "violations")
    wait_for(browser, "the violation", lambda: "body.emial" in text_of(browser, "#violations"))
    violation = text_of(browser, "#violations tbody tr")
    for shown in ("shop", "POST /api/v1/customers/forget", "additionalProperties",
                  "paths › /api/v1/customers/forget › post › requestBody", "is not a recognised field"):
        assert shown in violation, shown
    browser.save_screenshot(str(screenshots / "violations.png"))

    show_view(browser, "faults")
    wait_for(browser, "the fault rule", lambda: "flaky-search" in text_of(browser, "#faults"))
    rule = browser.execute_script(
        "return [...document.querySelector('#faults tbody tr').cells].map(td => td.textContent)")
    # Three searches matched, the first two were failed.
    assert rule == ["flaky-search", 'operation "search_customers"', "status 503", "first 2", "3",
                    "2"]
    limits = text_of(browser, "#rate-limits")
    assert "enabled\nyes" in limits and "refused so far\n1 requests in the journal" in limits
    assert "blueshift.forget" in text_of(browser, "#rate-limit-operations")
    browser.save_screenshot(str(screenshots / "faults.png"))


def test_advancing_the_clock_turns_a_pending_deletion_into_a_purged_one(browser, server,
                                                                         screenshots):
    seeded = requests.post(f"{server.url}/_fakeshift/accounts/gdpr/seed", headers=ADMIN, timeout=5,
                           json={"profiles": [{"email": "leaving@example.com"},
                                              {"email": "staying@example.com"}],
                                 "suppressed": [{"email": "never@example.com"}],
                                 "lists": [{"name": "Newsletter", "members": ["staying@example.com"]}],
                                 "groups": [{"group_id": "vip", "members": [{"email": "staying@example.com"}]}]})
    leaving, staying = seeded.json()["uuids"]
    requests.post(f"{server.url}/api/v1/customers/forget", headers=basic("gdpr"), timeout=5,
                  json={"email": "leaving@example.com"})
    state = requests.get(f"{server.url}/_fakeshift/accounts/gdpr", headers=ADMIN, timeout=5).json()
    due = next(p["deletion_due_at"] for p in state["profiles"] if p["uuid"] == leaving)
    open_dashboard(browser, server)
    show_view(browser, "accounts")
    click(browser, "#accounts tbody tr[data-account=gdpr]")

    def profile(uuid):
        return text_of(browser, f'#account-detail tr[data-uuid="{uuid}"]')

    wait_for(browser, "the pending deletion", lambda: f"pending forget due {due}" in (profile(leaving) or ""),
             seen=lambda: profile(leaving))
    detail = text_of(browser, "#account-detail")
    for shown in ("deletion delay\n2h (7200 s, the server's)", "never@example.com",
                  "Newsletter", "vip"):
        assert shown in detail, shown
    step = browser.find_element(By.ID, "clock-step")
    step.clear()
    step.send_keys("3h")
    click(browser, "#clock-advance")
    wait_for(browser, "the purge", lambda: "purged" in (profile(leaving) or ""),
             seen=lambda: profile(leaving))
    assert f"purged was due {due}" in profile(leaving)
    assert "active" in profile(staying)
    assert "0 pending deletion; 1 purged so far" in text_of(browser, "#account-detail")
    assert "+3h" in text_of(browser, "#clock-state")
    browser.save_screenshot(str(screenshots / "accounts-purged.png"))

    def clock():
        return requests.get(f"{server.url}/_fakeshift/clock", headers=ADMIN, timeout=5).json()

    click(browser, "#clock-freeze")
    wait_for(browser, "a frozen clock", lambda: text_of(browser, "#clock-state").startswith("frozen"),
             seen=lambda: text_of(browser, "#clock-state"))
    assert clock()["frozen"] is True and text_of(browser, "#clock-freeze") == "Unfreeze"
    click(browser, "#clock-reset")
    wait_for(browser, "the clock back at real time",
             lambda: text_of(browser, "#clock-state") == "running",
             seen=lambda: text_of(browser, "#clock-state"))
    after_reset = clock()
    assert after_reset["frozen"] is False and abs(after_reset["offset_seconds"]) < 1


# ---- responsiveness --------------------------------------------------------------------------

def _request_bytes(method: str, path: str, key: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {basic(key)['Authorization']}\r\n")
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


TRAFFIC = [
    _request_bytes("GET", "/api/v1/customers?email=someone@example.com", "shop-a"),
    _request_bytes("POST", "/api/v1/customers", "shop-b", b'{"email": "steady@example.com"}'),
    _request_bytes("GET", "/api/v1/customers?email=other@example.com", "shop-c"),
    _request_bytes("POST", "/api/v1/customers/forget", "shop-a", b'{"email": "gone@example.com"}'),
]


class Pipeline:
    """One keep-alive connection to 127.0.0.1 that writes requests in batches and reads their
    answers back: far cheaper for the test than a client library's round trip per request."""

    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.answers = self.socket.makefile("rb")

    def send(self, batch: list[bytes]) -> None:
        self.socket.sendall(b"".join(batch))
        for _ in batch:
            length = 0
            while (line := self.answers.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            self.answers.read(length)

    def close(self) -> None:
        self.answers.close()
        self.socket.close()


def _fill(port: int, count: int, connections: int = 4) -> None:
    def send_share(share: int) -> None:
        pipeline = Pipeline(port)
        for start in range(0, share, 100):
            pipeline.send([TRAFFIC[i % len(TRAFFIC)] for i in range(start, min(share, start + 100))])
        pipeline.close()

    threads = [threading.Thread(target=send_share, args=(count // connections,))
               for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class SteadyTraffic(threading.Thread):
    """`rate` requests per second for `seconds`, in 50 ms batches; it never catches up on a
    server slower than that (it sends at most rate x seconds, and stops one second late)."""

    TICK = 0.05

    def __init__(self, port: int, rate: int, seconds: float):
        super().__init__(daemon=True)
        self.port, self.per_tick, self.ticks = port, round(rate * self.TICK), round(seconds / self.TICK)
        self.sent = 0
        self.took = 0.0

    def run(self) -> None:
        pipeline = Pipeline(self.port)
        started = time.monotonic()
        for tick in range(self.ticks):
            pipeline.send([TRAFFIC[(self.sent + i) % len(TRAFFIC)] for i in range(self.per_tick)])
            self.sent += self.per_tick
            ahead = started + (tick + 1) * self.TICK - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            elif time.monotonic() - started > self.ticks * self.TICK + 1:
                break
        self.took = time.monotonic() - started
        pipeline.close()


def _last_id(server) -> int:
    answer = requests.get(f"{server.url}/_fakeshift/journal?limit=1", headers=ADMIN, timeout=5)
    return answer.json()["entries"][-1]["id"]


def test_the_page_keeps_up_with_a_full_journal_and_a_thousand_requests_a_second(browser, server):
    port = int(server.url.rsplit(":", 1)[1])
    _fill(port, JOURNAL_CAP)
    assert journal_count(server) == JOURNAL_CAP
    open_dashboard(browser, server)
    assert len(table_rows(browser)) == ROWS_SHOWN
    # The first answer (the newest 500 of a full journal) is not what this test measures.
    browser.execute_script("Object.assign(window.fakeshiftDashboard.stats, "
                           "{maxPollMs: 0, maxRenderMs: 0, maxClickMs: 0, polls: 0});")
    traffic = SteadyTraffic(port, rate=1000, seconds=6)
    traffic.start()
    clicks, lags, rows = [], [], []
    while traffic.is_alive():
        # A real click (an input event through chromedriver) on a row the poll keeps replacing.
        click(browser, "#requests tbody tr:nth-child(3)")
        clicks.append(browser.execute_script("return window.fakeshiftDashboard.stats.lastClickMs"))
        page = browser.execute_script("return window.fakeshiftDashboard.stats")
        lags.append(_last_id(server) - page["lastId"])
        rows.append(page["rows"])
        time.sleep(0.4)
    traffic.join()
    newest = _last_id(server)
    caught_up_in = time.monotonic()
    wait_for(browser, "the page to show the newest request", lambda: browser.execute_script(
        "return window.fakeshiftDashboard.stats.lastId") == newest, timeout=3)
    caught_up_in = time.monotonic() - caught_up_in
    stats = browser.execute_script("return window.fakeshiftDashboard.stats")
    rate = traffic.sent / traffic.took
    print(f"dashboard under load: {traffic.sent} requests in {traffic.took:.1f} s "
          f"({rate:.0f}/s); {stats['polls']} polls, slowest {stats['maxPollMs']:.0f} ms "
          f"(render {stats['maxRenderMs']:.1f} ms); clicks answered in at most "
          f"{max(clicks):.1f} ms; lag at most {max(lags)} requests; caught up "
          f"{caught_up_in:.2f} s after the traffic stopped")
    # The load was real for the whole run: the sender aims at 1,000 a second, and gets what a
    # busy two-core machine's server answers (400 to 900 a second where this was written).
    assert rate > 200 and traffic.took > 5
    # A poll (fetch and render) takes less than its period, so polls never pile up ...
    assert stats["polls"] >= traffic.took / 2 and stats["maxPollMs"] < 1000
    # ... updating the table takes a fraction of that period ...
    assert stats["maxRenderMs"] < 250
    # ... a click is answered while it runs, the table never holds more than its cap, and
    # the page never falls further behind than two polls' worth.
    assert max(clicks) < 250
    assert max(rows) == ROWS_SHOWN
    assert max(lags) < 2.5 * rate
