/**
 * The dialer page's entry point: builds the pieces, wires them to the bus,
 * and decides from GET /api/v1/session which view to show.
 *
 *   bus.js          event bus (the only way modules meet)
 *   api.js          REST: session sign in / who / sign out
 *   connection.js   the WebSocket: reconnect, ping, messages onto the bus
 *   media.js        microphone and RTCPeerConnection for one call
 *   calls.js        call state and the call messages of the protocol
 *   ui/*.js         views: sign-in, dialer, incoming panel, alerts, connection
 *   features/       later features (people search, recording, history...)
 *
 * The protocol is described in docs/browser-protocol.md.
 *
 * @module app
 */

import { currentUser, signOut } from "./api.js";
import { bus, errorText } from "./bus.js";
import { CallController } from "./calls.js";
import { Connection, socketUrl } from "./connection.js";
import { byId, show } from "./dom.js";
import { mountFeatures } from "./features/index.js";
import { mountAlerts } from "./ui/alerts.js";
import { mountConnectionIndicator } from "./ui/connection-indicator.js";
import { mountDialer } from "./ui/dialer.js";
import { mountIncoming } from "./ui/incoming.js";
import { mountSignIn } from "./ui/signin.js";

function main() {
  // Nothing escapes as an uncaught error: it is shown to the user instead.
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    bus.emit("alert", { text: `Something went wrong: ${errorText(event.reason)}` });
  });

  const audio = /** @type {HTMLAudioElement} */ (document.querySelector('audio[aria-label="Call audio"]'));
  const connection = new Connection({
    url: socketUrl(window.location),
    bus,
    checkSession: async () => (await currentUser()) !== null,
  });
  const calls = new CallController({ bus, connection, audio });

  // First listener on "session": the right view is visible before the views focus their fields.
  const dialerView = byId("dialer-view");
  bus.on("session", ({ user }) => {
    show(dialerView, Boolean(user));
    if (user) {
      connection.start();
    } else {
      connection.stop();
      calls.reset();
    }
  });

  mountAlerts(bus);
  mountConnectionIndicator(bus);
  mountSignIn({
    bus,
    onSignOut: async () => {
      calls.hangup();
      await signOut();
      bus.emit("alert", { text: "" });
      bus.emit("session", { user: null });
    },
  });
  mountIncoming({ bus, calls });
  mountDialer({ bus, connection, calls });
  mountFeatures({
    bus,
    connection,
    calls,
    slot: (name) => document.querySelector(`[data-slot="${CSS.escape(name)}"]`),
  });

  start();
}

/** First view: ask the server who is signed in. */
async function start() {
  let user = null;
  try {
    user = await currentUser();
  } catch {
    bus.emit("alert", { text: "Could not reach the server. Reload the page to try again." });
  }
  bus.emit("session", { user });
}

main();
