/**
 * Conference: during a connected call, "Invite" opens a small form ("Invite who":
 * a colleague's name or extension, or a number) that sends {"type": "invite"};
 * the server dials them in and tells the page the parties ({"type":
 * "participants"}) whenever one joins or leaves. The list shows each party's
 * name and state with a "Remove <name>" button ({"type": "remove"}). Only the
 * call's owner invites and removes: a colleague invited into someone else's call
 * sees the list without those. Hang up takes only this page out: the others stay
 * connected while two or more remain.
 *
 * @module features/conference
 */

import { byId, setText, show } from "../dom.js";

export const name = "conference";

/** A party's state in words. */
const STATES = { ringing: "Ringing", connected: "Connected", left: "Left" };

/**
 * @typedef {object} Party   one entry of a "participants" message
 * @property {string} leg_id
 * @property {string} peer       user name or E.164 number
 * @property {string | null} name
 * @property {"phone"|"browser"|"trunk"} kind
 * @property {"ringing"|"connected"|"left"} state
 */

/** @param {import("./index.js").FeatureContext} context */
export function mount({ bus, connection }) {
  const opener = /** @type {HTMLButtonElement} */ (byId("invite-open"));
  const form = byId("invite-form");
  const field = /** @type {HTMLInputElement} */ (byId("invite-to"));
  const send = byId("invite-send");
  const cancel = byId("invite-cancel");
  const error = byId("invite-error");
  const list = byId("participants");

  /** @type {import("../calls.js").Call | null} */
  let current = null;
  let username = "";
  /** @type {Map<string, {owner: string, parties: Party[]}>} each call's latest "participants" */
  const conferences = new Map();
  /** The ref of the invite waiting for its parties (or its error). */
  let pending = "";
  let refs = 0;

  bus.on("session", ({ user }) => {
    username = user ? user.username : "";
    conferences.clear();
    render();
  });
  bus.on("calls", (/** @type {import("../calls.js").CallsSnapshot} */ { current: call }) => {
    current = call;
    render();
  });
  bus.on("message:participants", (message) => {
    conferences.set(message.call, { owner: message.owner, parties: message.parties });
    if (pending && current && message.call === current.id) {
      pending = "";
      openForm(false);
      bus.emit("alert", { text: "" }); // a refused try before this one is over
    }
    render();
  });
  bus.on("message:error", (message) => {
    if (pending && message.ref === pending) {
      pending = "";
      setText(error, message.message);
      field.setAttribute("aria-invalid", "true");
      field.focus();
    }
  });

  opener.addEventListener("click", () => openForm(true));
  cancel.addEventListener("click", () => openForm(false));
  send.addEventListener("click", invite);
  // The form sits inside the dial form: Enter here invites, it must not place a call.
  field.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      invite();
    } else if (event.key === "Escape") {
      openForm(false);
    }
  });

  /** @param {boolean} open */
  function openForm(open) {
    show(form, open);
    show(opener, !open);
    opener.setAttribute("aria-expanded", String(open));
    setText(error, "");
    field.removeAttribute("aria-invalid");
    if (open) {
      field.focus();
    } else {
      field.value = "";
    }
  }

  function invite() {
    const to = field.value.trim();
    if (!to) {
      setText(error, "Invite who: type a colleague's name or extension, or a number.");
      field.setAttribute("aria-invalid", "true");
      field.focus();
      return;
    }
    if (!current || !current.id) return;
    pending = `invite-${++refs}`;
    if (!connection.send({ type: "invite", ref: pending, call: current.id, to })) {
      pending = "";
      setText(error, "Not connected to the server; try again in a moment.");
      return;
    }
    setText(error, "");
    field.removeAttribute("aria-invalid");
  }

  /**
   * @param {string} callId
   * @param {Party} party
   */
  function remove(callId, party) {
    if (!connection.send({ type: "remove", call: callId, leg: party.leg_id })) {
      bus.emit("alert", { text: "Not connected to the server; try again in a moment." });
    }
  }

  function render() {
    const call = current;
    const connected = Boolean(call && call.id && call.state === "connected");
    const shown = connected && call && call.id ? conferences.get(call.id) : undefined;
    // Until the server has named the owner, a connected call is taken to be ours.
    const owned = !shown || shown.owner === username;
    opener.disabled = !connected;
    if ((!connected || !owned) && !form.hidden) openForm(false);
    show(opener, owned && form.hidden);
    show(list, Boolean(shown));
    if (!call || !call.id || !shown) {
      list.replaceChildren();
      return;
    }
    const callId = call.id;
    list.replaceChildren(...shown.parties.map((party) => item(callId, party, owned)));
  }

  /**
   * @param {string} callId
   * @param {Party} party
   * @param {boolean} owned   this page's user owns the call: it may remove the others
   * @returns {HTMLLIElement}
   */
  function item(callId, party, owned) {
    const li = document.createElement("li");
    li.className = "party";
    li.dataset.state = party.state;
    const you = party.kind === "browser" && party.peer === username;
    const label = party.name || party.peer;
    const who = document.createElement("span");
    who.className = "party-name";
    who.textContent = you ? `${label} (you)` : label;
    const state = document.createElement("span");
    state.className = "party-state";
    state.textContent = STATES[party.state] || party.state;
    li.append(who, state);
    if (owned && !you && party.state !== "left") {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn-small btn-quiet";
      button.textContent = "Remove";
      button.setAttribute("aria-label", `Remove ${label}`);
      button.addEventListener("click", () => remove(callId, party));
      li.append(button);
    }
    return li;
  }
}
