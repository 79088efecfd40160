/**
 * The incoming-call panel: who is calling, "Answer", "Decline". Shows the
 * oldest call ringing here; the document title blinks while one rings so a
 * rep in another tab notices (no sound is autoplayed: browsers refuse it
 * without a click and log an error).
 *
 * @module ui/incoming
 */

import { byId, setText, show } from "../dom.js";

/**
 * @param {object} options
 * @param {import("../bus.js").Bus} options.bus
 * @param {import("../calls.js").CallController} options.calls
 */
export function mountIncoming({ bus, calls }) {
  const panel = byId("incoming");
  const caller = byId("incoming-caller");
  const answerButton = /** @type {HTMLButtonElement} */ (byId("answer"));
  const declineButton = /** @type {HTMLButtonElement} */ (byId("decline"));
  const baseTitle = document.title;
  /** @type {import("../calls.js").Call | null} */
  let ringing = null;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let blink;

  answerButton.addEventListener("click", () => {
    if (ringing) calls.answer(ringing);
  });
  declineButton.addEventListener("click", () => {
    if (ringing) calls.decline(ringing);
  });

  bus.on("calls", ({ incoming }) => {
    const wasRinging = ringing;
    ringing = incoming;
    show(panel, Boolean(incoming));
    if (!incoming) {
      stopBlink();
      return;
    }
    setText(caller, incoming.label);
    if (incoming !== wasRinging) {
      startBlink(incoming.label);
      // Bring the choice to the keyboard, unless the user is mid-typing.
      const active = document.activeElement;
      if (!active || active === document.body) answerButton.focus();
    }
  });

  /** @param {string} who */
  function startBlink(who) {
    stopBlink();
    let on = false;
    blink = setInterval(() => {
      on = !on;
      document.title = on ? `Incoming call: ${who}` : baseTitle;
    }, 1000);
  }

  function stopBlink() {
    clearInterval(blink);
    blink = undefined;
    document.title = baseTitle;
  }
}
