/**
 * The dialer: Number (with the server's E.164 preview), Extension, dial pad,
 * Call / Hang up / Mute / Hold, call state and timer.
 *
 * The number is checked by the server, not here: 200 ms after the user stops
 * typing the page sends {"type":"normalize","ref","number"} and shows the
 * reply ("number") for that ref only, so a slow reply to older input never
 * overwrites a newer one. "Call" is enabled only while the preview matches
 * what is in the field and no call is in progress.
 *
 * The dial pad edits the number, or sends DTMF while a call is connected;
 * dial-pad keys typed on the keyboard outside a text field do the same.
 *
 * @module ui/dialer
 */

import { byId, isTypingTarget, setText, show } from "../dom.js";
import { cleanExtension, formatDuration, isDialKey } from "../format.js";

const NORMALIZE_DELAY_MS = 200;

/**
 * @typedef {object} Preview   the server's answer for the Number field
 * @property {string} input    the text it was for
 * @property {string} [e164]
 * @property {string} [display]
 * @property {string} [extension]  an extension the server found in the number ("x45")
 * @property {string} [error]
 */

/** Words for a call's state in the dialer. */
const STATE_WORDS = {
  starting: "Starting microphone…",
  dialling: "Calling…",
  ringing: "Ringing",
  answering: "Connecting…",
  connected: "Connected",
};

/**
 * @param {object} options
 * @param {import("../bus.js").Bus} options.bus
 * @param {import("../connection.js").Connection} options.connection
 * @param {import("../calls.js").CallController} options.calls
 */
export function mountDialer({ bus, connection, calls }) {
  const form = /** @type {HTMLFormElement} */ (byId("dial-form"));
  const number = /** @type {HTMLInputElement} */ (byId("number"));
  const hint = byId("number-hint");
  const extension = /** @type {HTMLInputElement} */ (byId("extension"));
  const keypad = byId("keypad");
  const callButton = /** @type {HTMLButtonElement} */ (byId("call"));
  const hangupButton = /** @type {HTMLButtonElement} */ (byId("hangup"));
  const muteButton = /** @type {HTMLButtonElement} */ (byId("mute"));
  const holdButton = /** @type {HTMLButtonElement} */ (byId("hold"));
  const stateText = byId("call-state");
  const timer = byId("call-timer");
  const digits = byId("digits");

  /** @type {Preview | null} */
  let preview = null;
  /** ref of the latest "normalize" sent; replies to others are stale. */
  let pendingRef = "";
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let debounce;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let ticker;
  let sentDigits = "";

  // ----- number preview ------------------------------------------------

  /** The preview applies to what is in the field now and says it can be dialled. */
  const numberReady = () =>
    Boolean(preview && preview.e164 && !preview.error && preview.input === number.value.trim());

  function normalizeSoon() {
    clearTimeout(debounce);
    const text = number.value.trim();
    if (preview && preview.input !== text) preview = null;
    pendingRef = ""; // a reply still on its way is for older text
    number.removeAttribute("aria-invalid");
    if (!text) {
      setText(hint, "");
      bus.emit("number", { input: "" });
      render();
      return;
    }
    render();
    debounce = setTimeout(normalizeNow, NORMALIZE_DELAY_MS);
  }

  function normalizeNow() {
    clearTimeout(debounce);
    const text = number.value.trim();
    if (!text || (preview && preview.input === text)) return;
    const ref = connection.nextRef();
    if (connection.send({ type: "normalize", ref, number: text })) {
      pendingRef = ref;
    } else {
      pendingRef = "";
      setText(hint, "Waiting for the connection to check this number…");
    }
  }

  /** @param {Preview} result */
  function showPreview(result) {
    preview = result;
    if (result.error) {
      number.setAttribute("aria-invalid", "true");
      setText(hint, result.error);
      hint.dataset.kind = "error";
    } else {
      number.removeAttribute("aria-invalid");
      const e164 = result.e164 || "";
      const display = result.display || "";
      // "+14045551234 · (404) 555-1234"; for an extension just the server's words.
      let text = display || e164;
      if (e164.startsWith("+")) text = display && display !== e164 ? `${e164} · ${display}` : e164;
      if (result.extension) text += ` · ext. ${result.extension}`;
      setText(hint, text);
      hint.dataset.kind = "ok";
    }
    bus.emit("number", result);
    render();
  }

  bus.on("message:number", (message) => {
    if (!message.ref || message.ref !== pendingRef) return;
    pendingRef = "";
    const input = number.value.trim();
    if (message.error) showPreview({ input, error: String(message.error) });
    else {
      showPreview({
        input,
        e164: String(message.e164 || ""),
        display: String(message.display || ""),
        extension: typeof message.extension === "string" ? cleanExtension(message.extension) : "",
      });
    }
  });

  bus.on("message:error", (message) => {
    if (!message.ref || message.ref !== pendingRef) return;
    pendingRef = "";
    showPreview({ input: number.value.trim(), error: String(message.message || "This number cannot be checked.") });
  });

  bus.on("connection", ({ state }) => {
    if (state !== "connected") return;
    // Anything typed while offline is checked now; a reply lost with the old socket is asked again.
    if (number.value.trim() && !numberReady()) {
      preview = null;
      normalizeNow();
    }
    render();
  });

  number.addEventListener("input", normalizeSoon);

  extension.addEventListener("input", () => {
    const clean = cleanExtension(extension.value);
    if (clean !== extension.value) extension.value = clean;
  });

  // ----- dial pad and keyboard ------------------------------------------

  /**
   * One dial-pad key, from a click or the keyboard.
   * @param {string} key
   */
  function press(key) {
    const call = calls.current;
    if (call && call.live) {
      if (calls.sendDigits(key)) {
        sentDigits = (sentDigits + key).slice(-24);
        renderDigits();
      }
      return;
    }
    number.value += key;
    normalizeSoon();
  }

  keypad.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target.closest("button[data-key]") : null;
    if (target instanceof HTMLButtonElement && target.dataset.key) press(target.dataset.key);
  });

  document.addEventListener("keydown", (event) => {
    if (form.closest("[hidden]") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!isDialKey(event.key) || isTypingTarget(event.target)) return;
    // A focused pad button gets its own click from Enter/Space; digits typed anywhere else land here.
    event.preventDefault();
    press(event.key);
    const button = keypad.querySelector(`button[data-key="${CSS.escape(event.key)}"]`);
    if (button) {
      button.classList.add("key-pressed");
      setTimeout(() => button.classList.remove("key-pressed"), 120);
    }
  });

  // ----- call controls --------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!numberReady() || calls.busy || !preview || !preview.e164) return;
    sentDigits = "";
    // The Extension field wins; else one the server found in the number ("... x45").
    calls.dial(preview.e164, cleanExtension(extension.value) || preview.extension || "");
  });
  hangupButton.addEventListener("click", () => calls.hangup());
  muteButton.addEventListener("click", () => calls.toggleMute());
  holdButton.addEventListener("click", () => calls.toggleHold());

  // ----- rendering ------------------------------------------------------

  function render() {
    const call = calls.current;
    const live = Boolean(call && call.live);
    const connected = Boolean(call && call.state === "connected");

    callButton.disabled = live || !numberReady();
    hangupButton.disabled = !live;
    // A pass-through call's audio is on the rep's own phone: mute or hold it there.
    const ownPhone = Boolean(call && call.passthrough);
    muteButton.disabled = !live || ownPhone;
    holdButton.disabled = !connected || ownPhone;
    muteButton.setAttribute("aria-pressed", String(Boolean(live && call && call.muted)));
    holdButton.setAttribute("aria-pressed", String(Boolean(connected && call && call.held)));
    number.readOnly = live;
    extension.readOnly = live;
    keypad.dataset.mode = connected ? "dtmf" : "number";

    let words = "Ready";
    let state = "idle";
    if (call) {
      state = call.state;
      if (call.state === "ended") words = call.endedText;
      else if (connected && call.held) words = "On hold";
      else if (connected && call.heldByPeer) words = "On hold (by the other side)";
      else words = STATE_WORDS[call.state] || "Ready";
      if (connected && call.held) state = "held";
    }
    setText(stateText, words);
    stateText.dataset.state = state;
    renderTimer();
    renderDigits();
  }

  function renderTimer() {
    const call = calls.current;
    const answeredAt = call ? call.answeredAt : null;
    show(timer, answeredAt !== null);
    if (answeredAt === null || !call) {
      clearInterval(ticker);
      ticker = undefined;
      return;
    }
    const end = call.state === "ended" ? call.endedAt || Date.now() : Date.now();
    setText(timer, formatDuration(end - answeredAt));
    if (call.state === "connected" && ticker === undefined) {
      ticker = setInterval(renderTimer, 250);
    } else if (call.state !== "connected") {
      clearInterval(ticker);
      ticker = undefined;
    }
  }

  function renderDigits() {
    const call = calls.current;
    const parts = [];
    if (call && call.live && sentDigits) parts.push(`Sent: ${sentDigits}`);
    if (call && call.live && call.digitsReceived) parts.push(`Received: ${call.digitsReceived}`);
    setText(digits, parts.join("   "));
    show(digits, parts.length > 0);
  }

  bus.on("calls", render);
  bus.on("session", ({ user }) => {
    if (!user) return;
    render();
    number.focus();
  });
  render();
}
