/**
 * The page's one role="alert" area: sign-in errors, microphone problems,
 * server errors. Listens to "alert" ({text}); empty text clears it.
 *
 * @module ui/alerts
 */

import { byId, setText } from "../dom.js";

/**
 * @param {import("../bus.js").Bus} bus
 */
export function mountAlerts(bus) {
  const area = byId("alert");
  bus.on("alert", ({ text }) => {
    setText(area, text || "");
    area.classList.toggle("alert-shown", Boolean(text));
  });
}
