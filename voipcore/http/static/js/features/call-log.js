/**
 * "Log this call": when a call this page placed or answered ends (one the
 * server named), a form asks for its disposition and notes; Save sends
 * PUT /api/v1/calls/{id}/disposition, Skip lets it go. A call that ends while
 * the form is open waits its turn, so notes being typed are never lost.
 * History's "Edit" (bus "log-call") brings a logged call to the front; the
 * draft on show stays with its call and comes back after.
 *
 * @module features/call-log
 */

import { saveDisposition } from "../api.js";
import { errorText } from "../bus.js";
import { byId, setText, show } from "../dom.js";
import { formatDuration, personLine } from "../format.js";
import { dispositionsFor, fillDispositions } from "./dispositions.js";

export const name = "call-log";

/**
 * @typedef {object} LogEntry   one call waiting to be logged, with its draft
 * @property {string} callId
 * @property {string} summary       who, number, how it ended
 * @property {string} disposition   code, "" for none
 * @property {string} notes
 */

/** @param {import("./index.js").FeatureContext} context */
export function mount({ bus }) {
  const form = /** @type {HTMLFormElement} */ (byId("call-log"));
  const summary = byId("call-log-summary");
  const disposition = /** @type {HTMLSelectElement} */ (byId("call-log-disposition"));
  const notes = /** @type {HTMLTextAreaElement} */ (byId("call-log-notes"));
  const saveButton = /** @type {HTMLButtonElement} */ (byId("call-log-save"));
  const skipButton = byId("call-log-skip");
  const queueHint = byId("call-log-queue");
  const saved = byId("call-log-saved");
  /** Where the server's error for each field it may name goes, and the rest. */
  const errors = {
    disposition: { field: disposition, text: byId("call-log-disposition-error") },
    notes: { field: notes, text: byId("call-log-notes-error") },
  };
  const generalError = byId("call-log-error");

  /** @type {LogEntry[]} calls to log; the first is on show */
  let queue = [];
  /** Ids of this page's calls already queued once (skipped or saved ones do not come back). */
  const seen = new Set();
  let username = "";
  let saving = false;

  bus.on("session", ({ user }) => {
    username = user ? user.username : "";
    queue = [];
    seen.clear();
    setText(saved, "");
    showHead(false);
    if (user) loadDispositions();
  });

  async function loadDispositions() {
    try {
      fillDispositions(disposition, await dispositionsFor(username));
      if (queue[0]) disposition.value = queue[0].disposition;
    } catch (err) {
      setText(generalError, `The dispositions could not be loaded: ${errorText(err)}`);
    }
  }

  // ----- which calls to log --------------------------------------------

  bus.on("calls", (/** @type {import("../calls.js").CallsSnapshot} */ { calls }) => {
    for (const call of calls) {
      if (call.state !== "ended" || !call.id || seen.has(call.id)) continue;
      // Placed by this page, or answered here: a missed or declined call has nothing to log.
      if (call.direction !== "outbound" && call.answeredAt === null) continue;
      seen.add(call.id);
      enqueue({ callId: call.id, summary: describe(call), disposition: "", notes: "" });
    }
  });

  bus.on("log-call", (/** @type {{entry: LogEntry}} */ { entry }) => {
    queue = [entry, ...queue.filter((e) => e.callId !== entry.callId)];
    showHead(true);
    form.scrollIntoView({ block: "nearest" });
  });

  /** @param {LogEntry} entry */
  function enqueue(entry) {
    if (queue.some((e) => e.callId === entry.callId)) return;
    queue.push(entry);
    if (queue.length === 1) {
      setText(saved, "");
      showHead(shouldTakeFocus());
    } else {
      renderQueueHint();
    }
  }

  // ----- the form --------------------------------------------------------

  /** @param {boolean} focus */
  function showHead(focus) {
    const entry = queue[0];
    clearErrors();
    show(form, Boolean(entry));
    if (!entry) return;
    setText(summary, entry.summary);
    if (entry.disposition && ![...disposition.options].some((o) => o.value === entry.disposition)) {
      disposition.append(new Option(entry.disposition, entry.disposition)); // no longer offered
    }
    disposition.value = entry.disposition;
    notes.value = entry.notes;
    renderQueueHint();
    if (disposition.options.length === 1) loadDispositions();
    if (focus) disposition.focus();
  }

  function renderQueueHint() {
    const more = queue.length - 1;
    setText(queueHint, more > 0 ? `${more} more ${more === 1 ? "call" : "calls"} to log after this one.` : "");
  }

  // The draft lives in its entry, so a call brought in front does not lose it.
  disposition.addEventListener("change", () => {
    if (queue[0]) queue[0].disposition = disposition.value;
  });
  notes.addEventListener("input", () => {
    if (queue[0]) queue[0].notes = notes.value;
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const entry = queue[0];
    if (!entry || saving) return;
    saving = true;
    saveButton.disabled = true;
    clearErrors();
    const label = disposition.selectedOptions[0]?.textContent || "";
    try {
      const call = await saveDisposition(entry.callId, entry.disposition || null, entry.notes.trim() || null);
      done(entry);
      setText(saved, `Saved${entry.disposition ? ` as “${label}”` : ""}: ${entry.summary}.`);
      bus.emit("call-logged", { call });
    } catch (err) {
      showError(err);
    } finally {
      saving = false;
      saveButton.disabled = false;
    }
  });

  skipButton.addEventListener("click", () => {
    if (!queue[0]) return;
    setText(saved, "");
    done(queue[0]);
  });

  /**
   * Take a saved or skipped entry off the queue and show the next.
   * @param {LogEntry} entry
   */
  function done(entry) {
    queue = queue.filter((e) => e !== entry);
    showHead(queue.length > 0);
    if (!queue.length) byId("number").focus();
  }

  /** @param {unknown} err */
  function showError(err) {
    const text = errorText(err);
    const field = /** @type {{field?: string}} */ (err).field || "";
    const target = field in errors ? errors[/** @type {"disposition" | "notes"} */ (field)] : null;
    if (!target) {
      setText(generalError, text);
      return;
    }
    setText(target.text, text);
    target.field.setAttribute("aria-invalid", "true");
    target.field.focus();
  }

  function clearErrors() {
    setText(generalError, "");
    for (const { field, text } of Object.values(errors)) {
      setText(text, "");
      field.removeAttribute("aria-invalid");
    }
  }
}

/**
 * Who, which number, how it ended and how long: "Ada Lovelace · Acme · +14045550124 · Ended: hung up · 00:42".
 * @param {import("../calls.js").Call} call
 * @returns {string}
 */
function describe(call) {
  const parts = [call.person ? personLine(call.person) : "", call.label, call.endedText];
  if (call.answeredAt !== null && call.endedAt !== null) parts.push(formatDuration(call.endedAt - call.answeredAt));
  return parts.filter(Boolean).join(" · ");
}

/** Whether the form may take the focus: the user is not in the middle of something else. */
function shouldTakeFocus() {
  const active = document.activeElement;
  if (!active || active === document.body) return true;
  return active instanceof HTMLButtonElement && active.disabled;
}
