/**
 * The connection indicator in the top bar (role="status", named "Connection"):
 * "Connecting…", "Connected", "Reconnecting…", hidden when signed out.
 *
 * @module ui/connection-indicator
 */

import { byId, setText, show } from "../dom.js";

/** Words per connection state. */
const WORDS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

/**
 * @param {import("../bus.js").Bus} bus
 */
export function mountConnectionIndicator(bus) {
  const indicator = byId("connection");
  bus.on("connection", ({ state }) => {
    indicator.dataset.state = state;
    setText(indicator, WORDS[state] || state);
    show(indicator, state !== "offline");
  });
}
