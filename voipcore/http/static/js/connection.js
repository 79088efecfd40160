/**
 * The page's one WebSocket to the server (`/api/v1/ws`), kept alive.
 *
 * - Reconnects with backoff 1 s, 2 s, 4 s, 8 s, then every 10 s. The backoff
 *   resets only when a "hello" arrives, so a server that accepts and then drops
 *   the socket at once is not hammered every second.
 * - Sends {"type":"ping"} every 20 s; if nothing at all arrives for 45 s the
 *   socket is taken as dead, closed and reopened.
 * - When a socket closes before its "hello", the session may have expired:
 *   `checkSession` is asked, and if it says no the connection stops.
 *
 * Every server message is emitted on the bus as "message:<type>" and then as
 * "message". The connection state is emitted as "connection".
 *
 * @module connection
 */

import { backoffDelay } from "./format.js";

export const PING_INTERVAL_MS = 20000;
export const DEAD_AFTER_MS = 45000;
const CHECK_INTERVAL_MS = 5000;

/**
 * @typedef {"connecting" | "connected" | "reconnecting" | "offline"} ConnectionState
 */

/**
 * The ws:/wss: URL of the WebSocket on this page's origin.
 * @param {Location} location
 * @returns {string}
 */
export function socketUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/v1/ws`;
}

export class Connection {
  /**
   * @param {object} options
   * @param {string} options.url
   * @param {import("./bus.js").Bus} options.bus
   * @param {() => Promise<boolean>} [options.checkSession]  still signed in?
   * @param {typeof WebSocket} [options.WebSocketImpl]       for tests
   * @param {() => number} [options.now]                     for tests
   */
  constructor({ url, bus, checkSession, WebSocketImpl, now }) {
    this.url = url;
    this.bus = bus;
    this.checkSession = checkSession || (async () => true);
    this.WebSocketImpl = WebSocketImpl || globalThis.WebSocket;
    this.now = now || (() => Date.now());
    /** @type {WebSocket | null} */
    this.socket = null;
    /** @type {ConnectionState} */
    this.state = "offline";
    this.attempt = 0;
    this.running = false;
    this.greeted = false;
    this.lastHeard = 0;
    this.refCounter = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.pingTimer = undefined;
    this.pingDue = 0;
  }

  /** Open the socket (and keep it open) until stop(). */
  start() {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    this.open();
  }

  /** Close for good (sign out). */
  stop() {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.closeSocket();
    this.setState("offline");
  }

  /** Whether a message sent now reaches the server. */
  get connected() {
    return this.state === "connected";
  }

  /**
   * A fresh "ref" for a request whose reply must be matched to it.
   * @returns {string}
   */
  nextRef() {
    this.refCounter += 1;
    return `r${this.refCounter}`;
  }

  /**
   * Send one message. Returns false, sending nothing, when not connected.
   * @param {{type: string} & Record<string, unknown>} message
   * @returns {boolean}
   */
  send(message) {
    if (!this.socket || this.socket.readyState !== 1 /* OPEN */ || !this.greeted) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  /** @private */
  open() {
    clearTimeout(this.retryTimer);
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    this.greeted = false;
    let socket;
    try {
      socket = new this.WebSocketImpl(this.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.lastHeard = this.now();
      this.startPings();
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onerror = () => {
      // Followed by onclose, which does the work; handled so nothing is logged as uncaught.
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.stopPings();
      if (!this.running) return;
      const wasGreeted = this.greeted;
      this.greeted = false;
      this.setState("reconnecting");
      if (wasGreeted) {
        this.scheduleRetry();
      } else {
        this.retryIfSignedIn();
      }
    };
  }

  /** @private */
  async retryIfSignedIn() {
    let signedIn = true;
    try {
      signedIn = await this.checkSession();
    } catch {
      // The server is unreachable: keep retrying.
    }
    if (!this.running) return;
    if (signedIn) {
      this.scheduleRetry();
    } else {
      this.stop();
      this.bus.emit("session", { user: null, expired: true });
    }
  }

  /** @private */
  scheduleRetry() {
    if (!this.running) return;
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /**
   * @private
   * @param {unknown} data
   */
  receive(data) {
    this.lastHeard = this.now();
    if (typeof data !== "string") return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // not ours to show; the protocol is JSON text only
    }
    if (!message || typeof message.type !== "string") return;
    if (message.type === "hello") {
      this.greeted = true;
      this.attempt = 0;
      this.setState("connected");
    }
    if (message.type === "pong") return;
    this.bus.emit(`message:${message.type}`, message);
    this.bus.emit("message", message);
  }

  /**
   * One 5 s tick does both jobs: a ping every 20 s, and noticing soon after
   * 45 s of silence that the socket is dead.
   * @private
   */
  startPings() {
    this.stopPings();
    this.pingDue = this.now() + PING_INTERVAL_MS;
    this.pingTimer = setInterval(() => this.tick(), CHECK_INTERVAL_MS);
  }

  /** @private */
  tick() {
    const now = this.now();
    if (now - this.lastHeard >= DEAD_AFTER_MS) {
      // A socket we drop ourselves gets no onclose here: retry from this side.
      this.closeSocket();
      if (this.running) {
        this.setState("reconnecting");
        this.scheduleRetry();
      }
      return;
    }
    if (now >= this.pingDue && this.socket && this.socket.readyState === 1) {
      this.pingDue = now + PING_INTERVAL_MS;
      this.socket.send(JSON.stringify({ type: "ping" }));
    }
  }

  /** @private */
  stopPings() {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  /** @private */
  closeSocket() {
    this.stopPings();
    const socket = this.socket;
    this.socket = null;
    this.greeted = false;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      socket.onerror = () => {};
      try {
        socket.close();
      } catch {
        // already closing
      }
    }
  }

  /**
   * @private
   * @param {ConnectionState} state
   */
  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.bus.emit("connection", { state });
  }
}
