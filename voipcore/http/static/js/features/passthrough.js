/**
 * Pass-through calls: for reps whose internet is too weak for browser audio.
 *
 * "Settings" holds the rep's "Pass-through number" (GET/PUT /api/v1/settings;
 * the server normalises it to E.164 and refuses one with an extension); its
 * form exists only while open, so that its field does not stand in the way of
 * the dialer's "Number", and closes once saved. Once
 * one is saved, the dial pad shows the "Pass-through" switch, on by default,
 * with what such a call costs (two billable carrier legs). With it on, "Call"
 * sends a "dial" with "passthrough": true and no microphone: the server rings
 * the rep's phone, asks them to press 1, then dials the number. Its
 * "passthrough" messages are shown in the "Pass-through" status.
 *
 * @module features/passthrough
 */

import { getSettings, saveSettings } from "../api.js";
import { byId, setText } from "../dom.js";

export const name = "passthrough";

/** The stages the server reports, in words. */
const STAGE_WORDS = {
  calling_you: () => "Your phone is ringing…",
  press_1: () => "Press 1 on your phone",
  dialling: (/** @type {string} */ to) => `Dialling ${to}…`,
  connected: () => "Connected",
};

/** @param {import("./index.js").FeatureContext} context */
export function mount({ bus, calls }) {
  const section = byId("settings");
  const toggleButton = byId("settings-toggle");
  const body = byId("settings-body");
  const template = /** @type {HTMLTemplateElement} */ (byId("settings-template"));
  const saved = byId("settings-saved");
  const switchRow = byId("passthrough-toggle");
  const toggle = /** @type {HTMLInputElement} */ (byId("passthrough"));
  const toggleHint = byId("passthrough-hint");
  const stageText = byId("passthrough-state");

  /** @type {import("../api.js").Settings | null} */
  let settings = null;
  /** The call placed with pass-through on (its stages are shown). */
  /** @type {import("../calls.js").Call | null} */
  let placed = null;

  /** @param {import("../api.js").Settings} next */
  function apply(next) {
    const newlySet = Boolean(next.passthrough_number) && !settings?.passthrough_number;
    settings = next;
    const usable = next.passthrough_available && Boolean(next.passthrough_number);
    switchRow.hidden = !usable;
    if (newlySet) toggle.checked = true; // on by default once a number is set
    if (!usable) toggle.checked = false;
    calls.passthrough = toggle.checked;
    setText(toggleHint, usable ? costHint(next) : "");
  }

  async function load() {
    try {
      apply(await getSettings());
      section.hidden = false;
    } catch (err) {
      bus.emit("alert", { text: `Your settings could not be loaded: ${errorText(err)}` });
    }
  }

  bus.on("session", ({ user }) => {
    settings = null;
    placed = null;
    stageText.hidden = true;
    setOpen(false);
    setText(saved, "");
    if (user) load();
    else section.hidden = true;
  });

  toggleButton.addEventListener("click", () => {
    setOpen(toggleButton.getAttribute("aria-expanded") !== "true");
  });

  /** @param {boolean} open  show the form (made from its template) or take it away */
  function setOpen(open) {
    toggleButton.setAttribute("aria-expanded", String(open));
    body.replaceChildren();
    if (!open) return;
    const fragment = /** @type {DocumentFragment} */ (template.content.cloneNode(true));
    const form = /** @type {HTMLFormElement} */ (fragment.querySelector("form"));
    body.append(fragment);
    mountForm(form);
  }

  toggle.addEventListener("change", () => {
    calls.passthrough = toggle.checked;
  });

  /** @param {HTMLFormElement} form */
  function mountForm(form) {
    const numberInput = /** @type {HTMLInputElement} */ (byId("passthrough-number"));
    const numberHint = byId("passthrough-number-hint");
    const hintWords = numberHint.textContent || "";
    numberInput.value = settings?.passthrough_number || "";
    numberInput.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      setText(saved, "");
      numberInput.removeAttribute("aria-invalid");
      setText(numberHint, hintWords);
      delete numberHint.dataset.kind;
      try {
        const next = await saveSettings(numberInput.value.trim() || null);
        apply(next);
        setOpen(false);
        setText(
          saved,
          next.passthrough_number
            ? `Saved: pass-through calls ring ${next.passthrough_number} first.`
            : "Saved: pass-through is off.",
        );
      } catch (err) {
        const text = errorText(err);
        if (err instanceof Error && "field" in err && err.field === "passthrough_number") {
          numberInput.setAttribute("aria-invalid", "true");
          setText(numberHint, text);
          numberHint.dataset.kind = "error";
        } else {
          bus.emit("alert", { text });
        }
      }
    });
  }

  bus.on("dial", ({ message, call }) => {
    placed = message.passthrough ? call : null;
    if (placed) show(STAGE_WORDS.calling_you());
  });

  bus.on("message:passthrough", (message) => {
    if (!placed || placed.id !== String(message.call)) return;
    const words = STAGE_WORDS[/** @type {keyof typeof STAGE_WORDS} */ (message.state)];
    if (words) show(words(String(message.to || "")));
  });

  bus.on("calls", () => {
    if (placed && !placed.live) {
      placed = null;
      stageText.hidden = true;
    }
  });

  /** @param {string} text */
  function show(text) {
    setText(stageText, text);
    stageText.hidden = false;
  }
}

/**
 * "Rings your phone +14045550177 first · 2 billable legs · about $0.026/min".
 * @param {import("../api.js").Settings} settings
 * @returns {string}
 */
function costHint(settings) {
  const parts = [`Rings your phone ${settings.passthrough_number} first`];
  parts.push(`${settings.passthrough_legs} billable legs`);
  if (settings.rate_per_minute !== null) {
    const perMinute = settings.rate_per_minute * settings.passthrough_legs;
    parts.push(`about $${Number(perMinute.toFixed(4))}/min`);
  }
  return parts.join(" · ");
}

/**
 * @param {unknown} err
 * @returns {string}
 */
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}
