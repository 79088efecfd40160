/**
 * History: the user's calls (an admin's: everyone's, or one user's) from
 * GET /api/v1/calls, newest first, 25 at a time with "Load more". Filters:
 * From / To (local days), Disposition, Person (a people search), and User for
 * admins. "Export CSV" links to /api/v1/calls.csv with the same filters.
 * Each row's "Edit" opens "Log this call" for it (bus "log-call"); a saved
 * log ("call-logged") updates its row. Pass-through and click-to-call calls say
 * so under their direction; "Cost" shows each call's billable minutes and, with a
 * rate set for the trunk, its estimated cost ("2 min · $0.026"), and is left out
 * while no call shown has a billable minute.
 *
 * @module features/history
 */

import { callsCsvUrl, listCalls, listUsers } from "../api.js";
import { errorText } from "../bus.js";
import { byId, setText, show } from "../dom.js";
import { causeWords, directionWords, formatDuration, personLine } from "../format.js";
import { dispositionsFor, fillDispositions } from "./dispositions.js";
import { mountPersonPicker } from "./person-picker.js";

export const name = "history";

const PAGE_SIZE = 25;

const TIME = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });

/** US dollars, as the dial pad's rate: "$0.026", "$1.30". */
const USD = new Intl.NumberFormat("en-US", {
  style: "currency",
  currency: "USD",
  minimumFractionDigits: 2,
  maximumFractionDigits: 4,
});

/** How a call was placed, where it is not dialled directly from the page. */
const MODE_WORDS = { passthrough: "Pass-through", click_to_call: "Click-to-call" };

/** @param {import("./index.js").FeatureContext} context */
export function mount({ bus }) {
  const toggle = byId("history-toggle");
  const body = byId("history-body");
  const filtersForm = byId("history-filters");
  const from = /** @type {HTMLInputElement} */ (byId("history-from"));
  const to = /** @type {HTMLInputElement} */ (byId("history-to"));
  const disposition = /** @type {HTMLSelectElement} */ (byId("history-disposition"));
  const personChip = byId("history-person-chip");
  const personInput = /** @type {HTMLInputElement} */ (byId("history-person"));
  const userField = byId("history-user-field");
  const user = /** @type {HTMLSelectElement} */ (byId("history-user"));
  const status = byId("history-status");
  const exportLink = /** @type {HTMLAnchorElement} */ (byId("history-export"));
  const rowsBody = byId("history-rows");
  const table = byId("history-table");
  const costHead = byId("history-cost");
  const moreButton = /** @type {HTMLButtonElement} */ (byId("history-more"));

  /** @type {{id: number, name: string, account: {name: string} | null} | null} */
  let person = null;
  /** @type {any[]} the calls shown, as GET /api/v1/calls gives them */
  let rows = [];
  /** @type {string | null} */
  let cursor = null;
  /** @type {Map<string, string>} disposition code → label */
  let labels = new Map();
  let username = "";
  /** Number of the latest load: older replies are dropped. */
  let asked = 0;

  const isOpen = () => toggle.getAttribute("aria-expanded") === "true";

  /** @returns {import("../api.js").Query} */
  function filters() {
    return {
      since: localDay(from.value, 0),
      until: localDay(to.value, 1),
      disposition: disposition.value,
      person_id: person ? person.id : null,
      user: userField.hidden ? "" : user.value,
    };
  }

  /** @param {boolean} more  append the next page instead of starting over */
  async function load(more) {
    asked += 1;
    const mine = asked;
    setText(status, "Loading…");
    moreButton.disabled = true;
    let page;
    try {
      page = await listCalls(filters(), more ? cursor : null, PAGE_SIZE);
    } catch (err) {
      if (mine === asked) {
        setText(status, `The calls could not be loaded: ${errorText(err)}`);
        moreButton.disabled = false;
      }
      return;
    }
    if (mine !== asked) return;
    rows = more ? [...rows, ...page.items] : page.items;
    cursor = page.next_cursor;
    render();
  }

  function filtersChanged() {
    exportLink.href = callsCsvUrl(filters());
    if (isOpen()) load(false);
  }

  // ----- rendering ------------------------------------------------------

  function render() {
    const billable = rows.some((call) => Number(call.billable_minutes) > 0);
    show(costHead, billable);
    rowsBody.replaceChildren(...rows.map((call) => row(call, billable)));
    show(table, rows.length > 0);
    show(moreButton, Boolean(cursor));
    moreButton.disabled = false;
    const count = `${rows.length} ${rows.length === 1 ? "call" : "calls"}`;
    setText(status, rows.length ? (cursor ? `${count} shown, more to load.` : `${count}.`) : "No calls match.");
  }

  /**
   * @param {any} call   one item of GET /api/v1/calls
   * @param {boolean} billable  whether the row has a Cost cell (the column is shown)
   * @returns {HTMLTableRowElement}
   */
  function row(call, billable) {
    const tr = document.createElement("tr");
    const started = new Date(call.started_at);
    const when = document.createElement("time");
    when.dateTime = call.started_at;
    when.textContent = TIME.format(started);

    // The person's name over their account and the number; or just the number.
    const who = document.createElement("div");
    const whoText = call.person ? personLine(call.person) : "";
    if (call.person) {
      who.append(span("cell-main", call.person.name));
      who.append(span("cell-sub", [call.person.account, numberOf(call)].filter(Boolean).join(" · ")));
    } else {
      who.append(span("cell-main", numberOf(call)));
    }

    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "btn btn-quiet btn-small";
    const about = `${whoText || numberOf(call)}, ${TIME.format(started)}`;
    edit.append(call.disposition || call.notes ? "Edit" : "Log", span("visually-hidden", ` the call with ${about}`));
    edit.addEventListener("click", () => {
      bus.emit("log-call", {
        entry: {
          callId: call.call_id,
          summary: `${about} · ${statusOf(call)}`,
          disposition: call.disposition || "",
          notes: call.notes || "",
        },
      });
    });

    const notes = span("cell-notes", call.notes || "");

    const direction = document.createElement("div");
    direction.append(directionWords(call.direction));
    if (MODE_WORDS[call.mode]) direction.append(span("cell-tag", MODE_WORDS[call.mode]));

    /**
     * @param {Node | string} content
     * @param {boolean} [oneLine]  kept on one line, with tabular figures
     */
    const cell = (content, oneLine = false) => {
      const td = document.createElement("td");
      if (oneLine) td.className = "cell-line";
      td.append(content);
      return td;
    };
    tr.append(
      cell(when, true),
      cell(who),
      cell(direction),
      cell(formatDuration(Number(call.duration || 0) * 1000), true),
      ...(billable ? [cell(costOf(call), true)] : []),
      cell(statusOf(call), true),
      cell(call.disposition ? labels.get(call.disposition) || call.disposition : ""),
      cell(notes),
      cell(edit),
    );
    // Other features may add below the row (recording.js: the call's recordings).
    bus.emit("history-row", { call, row: tr, about });
    return tr;
  }

  // ----- events ---------------------------------------------------------

  toggle.addEventListener("click", () => {
    const open = !isOpen();
    toggle.setAttribute("aria-expanded", String(open));
    show(body, open);
    if (open) load(false);
  });

  filtersForm.addEventListener("submit", (event) => event.preventDefault());
  for (const control of [from, to, disposition, user]) control.addEventListener("change", filtersChanged);
  byId("history-refresh").addEventListener("click", () => load(false));
  moreButton.addEventListener("click", () => load(true));

  mountPersonPicker({
    input: personInput,
    list: byId("history-person-results"),
    status: byId("history-person-status"),
    onPick: (picked) => {
      person = picked;
      setText(byId("history-person-name"), personLine(picked));
      show(personChip, true);
      filtersChanged();
    },
  });
  byId("history-person-clear").addEventListener("click", () => {
    person = null;
    show(personChip, false);
    personInput.focus();
    filtersChanged();
  });

  bus.on("call-logged", ({ call }) => {
    if (!isOpen()) return;
    const index = rows.findIndex((r) => r.call_id === call.call_id);
    if (index < 0) {
      load(false);
      return;
    }
    rows[index] = { ...rows[index], ...call };
    render();
  });

  bus.on("session", async ({ user: signedIn }) => {
    username = signedIn ? signedIn.username : "";
    rows = [];
    cursor = null;
    person = null;
    show(personChip, false);
    rowsBody.replaceChildren();
    show(table, false);
    setText(status, "");
    toggle.setAttribute("aria-expanded", "false");
    show(body, false);
    show(userField, Boolean(signedIn && signedIn.role === "admin"));
    user.replaceChildren(/** @type {HTMLOptionElement} */ (user.options[0]));
    exportLink.href = callsCsvUrl(filters());
    if (!signedIn) return;
    const mine = username;
    try {
      const list = await dispositionsFor(mine);
      if (mine !== username) return;
      fillDispositions(disposition, list);
      labels = new Map(list.map((item) => [item.code, item.label]));
      if (!userField.hidden) {
        const users = await listUsers();
        if (mine !== username) return;
        for (const u of users) user.append(new Option(u.display_name || u.username, u.username));
      }
    } catch (err) {
      setText(status, errorText(err));
    }
  });
}

/**
 * A local day ("2026-12-03" from <input type=date>) plus `days`, as an ISO time; "" for none.
 * @param {string} value
 * @param {number} days
 * @returns {string}
 */
function localDay(value, days) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!match) return "";
  return new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + days).toISOString();
}

/**
 * The other party's number, with the extension dialled after it.
 * @param {any} call
 * @returns {string}
 */
function numberOf(call) {
  const number = call.direction === "inbound" ? call.caller : call.callee_e164 || call.callee_dialled;
  return call.callee_extension ? `${number} ext. ${call.callee_extension}` : number;
}

/**
 * "2 min" over "$0.026" (billable minutes and the estimated cost; read as "2 min ·
 * $0.026"), just "2 min" without a rate, "" for a call with no billable minute.
 * @param {any} call
 * @returns {Node | string}
 */
function costOf(call) {
  const minutes = Number(call.billable_minutes || 0);
  if (!minutes) return "";
  const cost = document.createDocumentFragment();
  cost.append(span("cell-cost", `${minutes} min`));
  if (typeof call.cost === "number") {
    cost.append(span("visually-hidden", " · "), span("cell-cost cell-sub", USD.format(call.cost)));
  }
  return cost;
}

/**
 * "Answered", "No answer", "In progress"...
 * @param {any} call
 * @returns {string}
 */
function statusOf(call) {
  if (!call.ended_at) return "In progress";
  if (call.answered_at) return "Answered";
  const words = causeWords(call.hangup_cause || "ended");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * @param {string} className
 * @param {string} text
 * @returns {HTMLSpanElement}
 */
function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}
