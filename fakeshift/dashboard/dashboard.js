// The fakeshift dashboard: views over the control plane, and the clock's buttons.
//
// Everything a request or an account holds is client data (paths, bodies, identifiers): it is
// only ever put on the page as text (textContent), never as HTML.
"use strict";
(() => {
  const POLL_MS = 1000;       // the journal, while the Requests view is shown and live
  const REFRESH_MS = 2000;    // the clock, and the other view when it is shown
  const ROWS_SHOWN = 500;     // the newest requests kept in the table; older rows are removed
  const ITEMS_SHOWN = 500;    // profiles, violations, accounts shown per table
  const NAMES_KEPT = 200;     // suggestions in the account and operation filters
  const PROBLEM_SHOWN_MS = 10000;

  const $ = (selector) => document.querySelector(selector);

  // What the responsiveness test reads, and what the footer shows.
  const stats = {
    polls: 0, lastPollMs: 0, maxPollMs: 0, lastRenderMs: 0, maxRenderMs: 0,
    lastId: 0, rows: 0, notShown: 0, lastClickMs: null, maxClickMs: 0,
  };
  window.fakeshiftDashboard = {stats};

  // ---- the admin token ------------------------------------------------------------------------
  // Taken once from ?token= (so a browser can open the page), then out of the address bar and
  // its history; every call sends it as a header, the way the control plane takes it.
  const pageQuery = new URLSearchParams(location.search);
  const adminToken = pageQuery.get("token");
  if (adminToken !== null) {
    pageQuery.delete("token");
    const rest = pageQuery.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }

  class CallError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function call(method, path, body) {
    const headers = {};
    if (adminToken !== null) headers["X-Fakeshift-Admin-Token"] = adminToken;
    // The dashboard's reads stay out of the journal: what a test reads there must not depend on
    // whether someone is watching.
    if (method === "GET") headers["X-Fakeshift-Journal"] = "skip";
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch("/_fakeshift" + path, {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json().catch(() => null);
    if (response.status === 401) {
      throw new CallError(401, "The admin token is missing or wrong: open this page as " +
                               "/_fakeshift/ui?token=<the server's --admin-token>");
    }
    if (!response.ok) {
      const errors = answer && answer.errors ? Object.entries(answer.errors)
        .map(([field, messages]) => `${field}: ${messages.join(", ")}`).join("; ") : null;
      throw new CallError(response.status, `${method} /_fakeshift${path}: ${response.status} ` +
                                           (errors || (answer && answer.message) || ""));
    }
    return answer;
  }

  let problemTimer = null;
  function showProblem(error) {
    const banner = $("#problem");
    banner.textContent = error instanceof CallError ? error.message : `Cannot reach the server: ${error}`;
    banner.hidden = false;
    clearTimeout(problemTimer);
    problemTimer = setTimeout(() => { banner.hidden = true; }, PROBLEM_SHOWN_MS);
  }

  // ---- building blocks --------------------------------------------------------------------------

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function badge(text, kind) {
    return element("span", text, "badge " + kind);
  }

  function row(cells, className) {
    const tr = document.createElement("tr");
    if (className) tr.className = className;
    for (const cell of cells) tr.append(cell instanceof Node ? cell : element("td", cell));
    return tr;
  }

  function cellOf(...nodes) {
    const td = document.createElement("td");
    td.append(...nodes);
    return td;
  }

  function facts(pairs) {
    const list = element("dl", null, "facts");
    for (const [name, value] of pairs) {
      list.append(element("dt", name));
      const dd = element("dd");
      dd.append(value instanceof Node ? value : document.createTextNode(String(value)));
      list.append(dd);
    }
    return list;
  }

  function table(headings, rows) {
    const node = document.createElement("table");
    const head = document.createElement("thead");
    head.append(row(headings.map((text) => element("th", text))));
    const body = document.createElement("tbody");
    body.append(...rows);
    node.append(head, body);
    return node;
  }

  function shortTime(iso) {
    return iso ? iso.slice(11, 23) : "";
  }

  function duration(seconds) {
    const sign = seconds < 0 ? "-" : "";
    let left = Math.round(Math.abs(seconds));
    if (left < 60) return `${sign}${left}s`;
    const parts = [];
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (left >= size) {
        parts.push(Math.floor(left / size) + unit);
        left %= size;
      }
    }
    return sign + parts.slice(0, 2).join(" ");
  }

  function prettyBody(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }

  // ---- the virtual clock ------------------------------------------------------------------------

  let clockSnapshot = null;
  let clockReceivedAt = 0;

  function clockNow() {
    if (!clockSnapshot) return null;
    const at = Date.parse(clockSnapshot.now);
    return new Date(clockSnapshot.frozen ? at : at + (performance.now() - clockReceivedAt));
  }

  function noteClock(snapshot) {
    clockSnapshot = snapshot;
    clockReceivedAt = performance.now();
    showClock();
  }

  function showClock() {
    const now = clockNow();
    if (!now) return;
    $("#clock-now").textContent = now.toISOString().replace("T", " ").slice(0, 19) + "Z";
    const state = $("#clock-state");
    const offset = clockSnapshot.offset_seconds;
    state.textContent = (clockSnapshot.frozen ? "frozen" : "running") +
      (Math.abs(offset) >= 1 ? ` · ${offset > 0 ? "+" : ""}${duration(offset)}` : "");
    state.className = "badge" + (clockSnapshot.frozen ? " frozen" : "");
    $("#clock-freeze").textContent = clockSnapshot.frozen ? "Unfreeze" : "Freeze";
  }

  async function refreshClock() {
    noteClock(await call("GET", "/clock"));
  }

  async function clockAction(action) {
    const buttons = ["#clock-advance", "#clock-freeze", "#clock-reset"].map($);
    buttons.forEach((button) => { button.disabled = true; });
    try {
      await action();
      await refreshShownView();
    } catch (error) {
      showProblem(error);
    } finally {
      buttons.forEach((button) => { button.disabled = false; });
    }
  }

  $("#clock-advance").addEventListener("click", () => clockAction(async () => {
    noteClock(await call("POST", "/clock/advance", {by: $("#clock-step").value.trim()}));
  }));
  $("#clock-freeze").addEventListener("click", () => clockAction(async () => {
    const frozen = clockSnapshot && clockSnapshot.frozen;
    noteClock(await call("POST", frozen ? "/clock/unfreeze" : "/clock/freeze", {}));
  }));
  // The control plane has no call that only resets the clock: unfreeze, then set the time to
  // the server's real time (its time less its offset, plus what has passed since), which
  // leaves an offset of about one round trip.
  $("#clock-reset").addEventListener("click", () => clockAction(async () => {
    const running = await call("POST", "/clock/unfreeze", {});
    const receivedAt = performance.now();
    const realNow = Date.parse(running.now) - running.offset_seconds * 1000;
    const now = new Date(realNow + (performance.now() - receivedAt)).toISOString();
    noteClock(await call("POST", "/clock/set", {now}));
  }));

  // ---- requests: the journal, fetched incrementally ---------------------------------------------

  const requestRows = $("#requests tbody");
  const shownEntries = new Map();  // id -> entry, for the rows in the table
  const knownAccounts = new Set();
  const knownOperations = new Set();
  let lastId = 0;
  let generation = 0;  // bumped when the filters change: answers to older queries are dropped
  let pollTimer = null;
  let polling = false;
  let pollAgain = false;
  let selectedRow = null;

  function requestFilters() {
    const form = $("#request-filters");
    const query = new URLSearchParams();
    for (const name of ["account", "operation", "status"]) {
      const value = form.elements[name].value.trim();
      if (value) query.set(name, value);
    }
    return query;
  }

  function isLive() {
    return $("#live").checked && !$("#view-requests").hidden;
  }

  function schedulePoll(delay) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(pollJournal, delay);
  }

  // One poll at a time: the next is scheduled when this one is done, so a slow answer never
  // piles up requests.
  async function pollJournal() {
    pollTimer = null;
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    const asked = generation;
    try {
      const query = requestFilters();
      query.set("limit", String(ROWS_SHOWN));
      const incremental = lastId > 0;
      if (incremental) query.set("after", String(lastId));
      const started = performance.now();
      const page = await call("GET", "/journal?" + query);
      if (asked === generation) {
        const renderStarted = performance.now();
        showEntries(page.entries);
        // Only what arrived between two polls counts: the first answer is the newest page.
        if (incremental) stats.notShown += page.count - page.entries.length;
        const done = performance.now();
        stats.polls += 1;
        stats.lastPollMs = done - started;
        stats.maxPollMs = Math.max(stats.maxPollMs, stats.lastPollMs);
        stats.lastRenderMs = done - renderStarted;
        stats.maxRenderMs = Math.max(stats.maxRenderMs, stats.lastRenderMs);
        showPollStats();
      }
    } catch (error) {
      showProblem(error);
    } finally {
      polling = false;
    }
    if (pollAgain) {
      pollAgain = false;
      schedulePoll(0);
    } else if (isLive()) {
      schedulePoll(POLL_MS);
    }
  }

  // New entries (oldest first) go on top in one insertion; rows past ROWS_SHOWN leave from the
  // bottom. The rows already there are left alone.
  function showEntries(entries) {
    if (!entries.length) return;
    lastId = entries[entries.length - 1].id;
    stats.lastId = lastId;
    const fresh = entries.slice(-ROWS_SHOWN);
    const fragment = document.createDocumentFragment();
    for (let index = fresh.length - 1; index >= 0; index -= 1) {
      const entry = fresh[index];
      shownEntries.set(entry.id, entry);
      fragment.append(requestRow(entry));
      remember(knownAccounts, "#known-accounts", entry.account);
      remember(knownOperations, "#known-operations", entry.operation);
    }
    const excess = requestRows.rows.length + fresh.length - ROWS_SHOWN;
    if (excess >= requestRows.rows.length) {
      shownEntries.clear();
      fresh.forEach((entry) => shownEntries.set(entry.id, entry));
      requestRows.replaceChildren(fragment);
    } else {
      if (excess > 0) {
        // The oldest rows go in one removal.
        const firstGone = requestRows.rows[requestRows.rows.length - excess];
        for (let gone = firstGone; gone; gone = gone.nextElementSibling) {
          shownEntries.delete(Number(gone.dataset.id));
        }
        const range = document.createRange();
        range.setStartBefore(firstGone);
        range.setEndAfter(requestRows.lastElementChild);
        range.deleteContents();
      }
      requestRows.prepend(fragment);
    }
    stats.rows = requestRows.rows.length;
  }

  // Rows are copies of one row of empty cells, filled with text: cheaper than building each
  // cell, which matters when a poll brings a whole table of new rows.
  const REQUEST_CELLS = ["mono", "mono", "", "path mono", "", "", "mono", ""];
  const requestRowTemplate = document.createElement("tr");
  for (const className of REQUEST_CELLS) requestRowTemplate.append(element("td", null, className));

  function requestRow(entry) {
    const tr = requestRowTemplate.cloneNode(true);
    tr.dataset.id = entry.id;
    if (entry.fault) tr.classList.add("faulted");
    if (entry.violation) tr.classList.add("violating");
    const [id, time, account, request, operation, status, latency, marks] = tr.cells;
    const target = `${entry.method} ${entry.path}` + (entry.query ? "?" + entry.query : "");
    id.textContent = entry.id;
    time.textContent = shortTime(entry.time);
    time.title = entry.time;
    account.textContent = entry.account ?? "—";
    request.textContent = target;
    request.title = target;
    operation.textContent = shortOperation(entry.operation);
    operation.title = entry.operation ?? "";
    status.textContent = entry.status ?? "dropped";
    status.className = entry.status === null ? "status-none" : "status-" + String(entry.status)[0];
    latency.textContent = entry.latency_ms.toFixed(1);
    if (entry.fault) marks.append(badge("fault " + entry.fault, "fault"));
    if (entry.violation) marks.append(badge("contract " + entry.violation, "violation"));
    return tr;
  }

  // Blueshift's operations by the names fault rules and violations use; the control plane's
  // keep their blueprint (admin.seed, faults.add_fault).
  function shortOperation(operation) {
    if (!operation) return "—";
    return operation.startsWith("blueshift.") ? operation.slice("blueshift.".length) : operation;
  }

  function remember(names, list, name) {
    if (!name || names.has(name) || names.size >= NAMES_KEPT) return;
    names.add(name);
    const option = document.createElement("option");
    option.value = name;
    $(list).append(option);
  }

  function showPollStats() {
    const notShown = stats.notShown ? ` · ${stats.notShown} not shown (over ${ROWS_SHOWN} in one poll)` : "";
    $("#request-summary").textContent = `newest ${stats.rows} shown · last id ${stats.lastId}`;
    $("#poll-stats").textContent = `journal poll ${stats.lastPollMs.toFixed(0)} ms ` +
      `(render ${stats.lastRenderMs.toFixed(1)} ms, slowest poll ${stats.maxPollMs.toFixed(0)} ms)` +
      notShown;
  }

  function restartJournal() {
    generation += 1;
    lastId = 0;
    shownEntries.clear();
    requestRows.replaceChildren();
    selectedRow = null;
    schedulePoll(0);
  }

  requestRows.addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    const entry = tr && shownEntries.get(Number(tr.dataset.id));
    if (!entry) return;
    if (selectedRow) selectedRow.classList.remove("selected");
    selectedRow = tr;
    tr.classList.add("selected");
    showRequest(entry);
    // From the input event to the detail on the page: the main thread's delay included.
    stats.lastClickMs = performance.now() - event.timeStamp;
    stats.maxClickMs = Math.max(stats.maxClickMs, stats.lastClickMs);
  });

  function showRequest(entry) {
    const detail = $("#request-detail");
    const kept = entry.body === null ? 0 : new TextEncoder().encode(entry.body).length;
    const size = entry.body === null ? "none" : `${entry.body_size} bytes` +
      (kept < entry.body_size ? ` (the journal kept the first ${kept})` : "");
    const parts = [
      element("h2", `Request ${entry.id}`),
      facts([
        ["time", `${entry.time} (virtual clock)`],
        ["account", entry.account ?? "— (no valid API key)"],
        ["operation", entry.operation ?? "—"],
        ["method", entry.method],
        ["path", entry.path],
        ["query", entry.query || "—"],
        ["body", size],
      ]),
    ];
    if (entry.body) parts.push(element("pre", prettyBody(entry.body), "body"));
    parts.push(
      element("h2", "Answer"),
      facts([
        ["status", entry.status ?? "none: the connection was dropped"],
        ["latency", `${entry.latency_ms.toFixed(3)} ms`],
        ["fault", entry.fault ? `injected (${entry.fault})` : "none"],
        ["contract", entry.violation ? `broken: ${entry.violation} (see Contract violations)` : "kept"],
      ]),
      element("p", "The journal keeps the status of each answer, not its body.", "hint"),
    );
    detail.replaceChildren(...parts);
  }

  let filterTimer = null;
  $("#request-filters").addEventListener("input", (event) => {
    if (event.target.id === "live") return;
    clearTimeout(filterTimer);
    filterTimer = setTimeout(restartJournal, 250);
  });
  $("#request-filters").addEventListener("submit", (event) => event.preventDefault());
  $("#live").addEventListener("change", () => {
    if (isLive()) schedulePoll(0);
    else clearTimeout(pollTimer);
  });

  // ---- accounts ---------------------------------------------------------------------------------

  let selectedAccount = null;
  // Purged profiles leave the account's state: the dashboard remembers the pending ones it saw,
  // per account, so it can show them as purged when they go.
  const accountMemory = new Map();

  async function refreshAccounts() {
    const {accounts} = await call("GET", "/accounts");
    const rows = accounts.slice(0, ITEMS_SHOWN).map((account) => {
      const s = account.stats;
      const tr = row([account.account, s.profiles, s.active, s.pending_deletion, s.purged,
                      s.suppressed, s.lists, s.groups],
                     account.account === selectedAccount ? "selected" : "");
      tr.dataset.account = account.account;
      remember(knownAccounts, "#known-accounts", account.account);
      return tr;
    });
    $("#accounts tbody").replaceChildren(...rows);
    if (selectedAccount) await refreshAccount();
  }

  $("#accounts tbody").addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (!tr) return;
    selectedAccount = tr.dataset.account;
    for (const other of $("#accounts tbody").rows) other.classList.toggle("selected", other === tr);
    refreshAccount().catch(showProblem);
  });

  async function refreshAccount() {
    const name = selectedAccount;
    let state;
    try {
      state = await call("GET", "/accounts/" + encodeURIComponent(name));
    } catch (error) {
      if (error.status !== 404) throw error;
      accountMemory.delete(name);
      $("#account-detail").replaceChildren(element("p", `The account ${name} is gone.`, "hint"));
      return;
    }
    if (name === selectedAccount) showAccount(state, notePurges(name, state));
  }

  function notePurges(name, state) {
    const previous = accountMemory.get(name);
    const sameAccount = previous && previous.uuid === state.uuid;
    const purged = sameAccount ? previous.purged : new Map();
    if (sameAccount) {
      const present = new Set(state.profiles.map((profile) => profile.uuid));
      const vanished = [...previous.pending.values()].filter((profile) => !present.has(profile.uuid));
      // A reset also empties an account: only a purge count that grew says they were purged.
      if (vanished.length && state.stats.purged - previous.purgedCount >= vanished.length) {
        const seenAt = clockNow();
        for (const profile of vanished) purged.set(profile.uuid, {profile, seenAt});
      }
      for (const uuid of [...purged.keys()].slice(0, Math.max(0, purged.size - ITEMS_SHOWN))) {
        purged.delete(uuid);
      }
    }
    const pending = new Map(state.profiles.filter((profile) => profile.deletion_pending)
      .map((profile) => [profile.uuid, profile]));
    accountMemory.set(name, {uuid: state.uuid, purgedCount: state.stats.purged, pending, purged});
    return purged;
  }

  const IDENTIFIERS = ["email", "customer_id", "cookie", "device_id"];

  function profileRow(profile, stateCell, className) {
    const identifiers = IDENTIFIERS.filter((kind) => profile[kind])
      .map((kind) => `${kind}: ${profile[kind]}`).join(" · ");
    const tr = row([element("td", profile.uuid, "mono uuid"), identifiers || "—",
                    element("td", shortTime(profile.created_at), "mono"), stateCell], className);
    tr.dataset.uuid = profile.uuid;
    return tr;
  }

  function profileState(profile) {
    if (!profile.deletion_pending) return cellOf(badge("active", "active"));
    const now = clockNow();
    const left = now ? (Date.parse(profile.deletion_due_at) - now.getTime()) / 1000 : null;
    return cellOf(badge(`pending ${profile.deletion_reason}`, "pending"),
                  document.createTextNode(` due ${profile.deletion_due_at}` +
                                          (left === null ? "" : ` (in ${duration(left)})`)));
  }

  function showAccount(state, purged) {
    const s = state.stats;
    const profiles = state.profiles.slice(0, ITEMS_SHOWN)
      .map((profile) => profileRow(profile, profileState(profile),
                                   profile.deletion_pending ? "pending" : ""));
    for (const {profile, seenAt} of purged.values()) {
      profiles.push(profileRow(profile, cellOf(badge("purged", "purged"), document.createTextNode(
        ` was due ${profile.deletion_due_at}` + (seenAt ? `; gone by ${seenAt.toISOString()}` : ""))),
        "purged"));
    }
    const more = state.profiles.length > ITEMS_SHOWN
      ? [element("p", `… and ${state.profiles.length - ITEMS_SHOWN} more profiles`, "hint")] : [];
    const delay = state.settings.deletion_delay;
    $("#account-detail").replaceChildren(
      element("h2", `Account ${state.account}`),
      facts([
        ["uuid", state.uuid],
        ["deletion delay", `${duration(delay)} (${delay} s, ` +
                           `${state.settings.deletion_delay_overridden ? "this account's" : "the server's"})`],
        ["profiles", `${s.profiles}: ${s.active} active, ${s.pending_deletion} pending deletion; ` +
                     `${s.purged} purged so far`],
      ]),
      element("h2", "Profiles"),
      table(["uuid", "identifiers", "created", "state"], profiles),
      ...more,
      element("h2", `Suppressed identifiers (${state.suppressed.length})`),
      table(["kind", "value", "since"], state.suppressed.slice(0, ITEMS_SHOWN)
        .map((entry) => row([entry.kind, entry.value, element("td", entry.since, "mono")]))),
      element("h2", `Custom lists (${state.lists.length})`),
      table(["id", "name", "members", "source", "updated"], state.lists.slice(0, ITEMS_SHOWN)
        .map((list) => row([list.id, list.filename, list.user_count, list.source,
                            element("td", list.updated_at, "mono")]))),
      element("h2", `Customer groups (${state.groups.length})`),
      table(["group id", "members", "updated"], state.groups.slice(0, ITEMS_SHOWN)
        .map((group) => row([group.group_id, group.user_count, element("td", group.updated_at, "mono")]))),
    );
  }

  // ---- contract violations ----------------------------------------------------------------------

  let documentOperations = null;  // operationId -> [path, method] in openapi/blueshift.yaml
  let violationsShown = "";

  async function loadDocumentOperations() {
    const spec = await call("GET", "/openapi/blueshift.json");
    documentOperations = new Map();
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        if (operation && operation.operationId) documentOperations.set(operation.operationId, [path, method]);
      }
    }
  }

  // Where in the document the broken rule is: the operation, then the part of it that says
  // what the request's location may hold.
  function documentPlace(violation) {
    const found = violation.operation && documentOperations.get(violation.operation);
    if (!found) return "no operation (unknown path or method)";
    const location = violation.location;
    const part = location === "header.Content-Type" ? "requestBody › content"
      : location.startsWith("body") ? "requestBody"
      : location.startsWith("query") ? "parameters (query)"
      : location.startsWith("path") ? "parameters (path)"
      : location === "header.Authorization" ? "security" : "";
    return ["paths", found[0], found[1], part].filter(Boolean).join(" › ");
  }

  async function refreshViolations() {
    if (!documentOperations) await loadDocumentOperations();
    const {count, violations} = await call("GET", "/violations");
    const newest = violations.length ? violations[violations.length - 1].id : 0;
    // Redrawn only when something changed: a cleared account changes the count.
    if (`${count}:${newest}` === violationsShown) return;
    violationsShown = `${count}:${newest}`;
    const rows = violations.slice(-ITEMS_SHOWN).reverse().map((violation) => {
      const place = cellOf(element("div", violation.operation ?? "—"),
                           element("div", documentPlace(violation), "hint"));
      return row([element("td", violation.id, "mono"), element("td", shortTime(violation.time), "mono"),
                  violation.account ?? "— (no valid API key)",
                  element("td", `${violation.method} ${violation.path}`, "mono path"), place,
                  element("td", violation.location, "mono"), cellOf(badge(violation.rule, "violation")),
                  violation.message]);
    });
    $("#violations tbody").replaceChildren(...rows);
    $("#violation-summary").textContent = count > ITEMS_SHOWN
      ? `${count} recorded; the newest ${ITEMS_SHOWN} shown` : `${count} recorded`;
  }

  // ---- fault rules and rate limits --------------------------------------------------------------

  const TARGETS = ["operation", "method", "path", "path_regex", "account"];
  const EFFECTS = ["status", "retry_after", "latency", "drop", "truncate", "malformed", "apply"];
  const WHEN = ["probability", "seed", "first", "every", "after", "from", "until"];

  function pairs(rule, names, otherwise) {
    const shown = names.filter((name) => rule[name] !== undefined && rule[name] !== null && rule[name] !== false)
      .map((name) => rule[name] === true ? name : `${name} ${JSON.stringify(rule[name])}`);
    return shown.length ? shown.join(", ") : otherwise;
  }

  function noRules() {
    const td = element("td", "No fault rules.", "hint");
    td.colSpan = 6;
    return td;
  }

  async function refreshFaults() {
    const [faults, limits, limited] = await Promise.all([
      call("GET", "/faults"), call("GET", "/rate-limits"),
      call("GET", "/journal?fault=rate-limit&limit=0"),
    ]);
    $("#faults tbody").replaceChildren(...(faults.rules.length ? faults.rules.map((rule) => row([
      element("td", rule.id, "mono"), pairs(rule, TARGETS, "every Blueshift request"),
      pairs(rule, EFFECTS, "—"), pairs(rule, WHEN, "always"),
      element("td", rule.matched, "mono"), element("td", rule.applied, "mono"),
    ])) : [row([noRules()])]));
    $("#rate-limits").replaceChildren(...facts([
      ["enabled", limits.enabled ? "yes" : "no"],
      ["default", limits.rate !== undefined ? `${limits.rate} /s, burst ${limits.burst}` : "none"],
      ["Retry-After on 429", limits.retry_after ? "yes" : "no"],
      ["buckets", limits.buckets],
      ["refused so far", `${limited.count} requests in the journal`],
    ]).childNodes);
    const operations = Object.entries(limits.operations || {});
    $("#rate-limit-operations tbody").replaceChildren(...operations.map(([name, limit]) =>
      row([element("td", name, "mono"), limit.rate, limit.burst])));
  }

  // ---- views ------------------------------------------------------------------------------------

  const VIEW_REFRESH = {accounts: refreshAccounts, violations: refreshViolations, faults: refreshFaults};
  let shownView = "requests";
  let refreshing = false;

  async function refreshShownView() {
    const refresh = VIEW_REFRESH[shownView];
    if (refresh) await refresh();
    else schedulePoll(0);
  }

  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      shownView = tab.dataset.view;
      for (const other of document.querySelectorAll(".tab")) {
        other.setAttribute("aria-selected", String(other === tab));
      }
      for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== "view-" + shownView;
      if (shownView !== "requests") clearTimeout(pollTimer);
      refreshShownView().catch(showProblem);
    });
  }

  setInterval(async () => {
    if (refreshing) return;
    refreshing = true;
    try {
      await refreshClock();
      if (VIEW_REFRESH[shownView]) await refreshShownView();
    } catch (error) {
      showProblem(error);
    } finally {
      refreshing = false;
    }
  }, REFRESH_MS);
  // The clock ticks on the page between refreshes.
  setInterval(showClock, 250);

  refreshClock().catch(showProblem);
  restartJournal();
})();
