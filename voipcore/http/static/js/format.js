/**
 * Pure helpers: text the page shows, and input rules. No DOM, no state, so
 * they can be checked with plain `node`.
 *
 * @module format
 */

/** Keys of the dial pad, in pad order. */
export const DIAL_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

/** Letters printed under the pad digits, as on a phone. */
export const DIAL_LETTERS = {
  "2": "ABC", "3": "DEF", "4": "GHI", "5": "JKL", "6": "MNO",
  "7": "PQRS", "8": "TUV", "9": "WXYZ", "0": "+",
};

/** Words for the "cause" of an "ended" message. Unknown causes are shown as sent. */
const CAUSE_WORDS = {
  busy: "busy",
  declined: "declined",
  rejected: "declined",
  no_answer: "no answer",
  hangup: "hung up",
  normal: "hung up",
  remote_hangup: "the other side hung up",
  failed: "call failed",
  cancelled: "cancelled",
  unavailable: "unavailable",
  not_found: "number not found",
  timeout: "no response",
  answered_elsewhere: "answered elsewhere",
  connection_lost: "connection lost",
  media_failed: "audio failed",
  transferred: "transferred",
  removed: "removed from the call",
  system: "ended by the server",
  passthrough_declined: "a key other than 1 was pressed",
  passthrough_timeout: "1 was not pressed in time",
};

/**
 * "Ended: busy" style text for a call's end.
 * @param {string} [cause]   e.g. "busy", "remote_hangup"
 * @param {number} [status]  SIP status, e.g. 486
 * @param {string} [reason]  SIP reason phrase, e.g. "Busy Here"
 * @returns {string}
 */
export function endedText(cause, status, reason) {
  const key = cause || "hangup";
  const words = causeWords(key);
  // The SIP code helps when the cause is a plain "failed".
  if (key === "failed" && status) {
    return `Ended: ${words} (${status}${reason ? ` ${reason}` : ""})`;
  }
  return `Ended: ${words}`;
}

/**
 * Words for a call's end cause ("no_answer" -> "no answer").
 * @param {string} cause
 * @returns {string}
 */
export function causeWords(cause) {
  return CAUSE_WORDS[cause] || cause.replace(/_/g, " ");
}

/** Words for a call log's direction. */
const DIRECTION_WORDS = { outbound: "Outbound", inbound: "Inbound", internal: "Internal" };

/**
 * @param {string} direction  "outbound" | "inbound" | "internal"
 * @returns {string}
 */
export function directionWords(direction) {
  return DIRECTION_WORDS[direction] || direction;
}

/**
 * "Ada Lovelace · Acme Corp" (or just the name without an account).
 * @param {{name: string, account?: {name: string} | string | null}} person
 * @returns {string}
 */
export function personLine(person) {
  const account = typeof person.account === "string" ? person.account : person.account?.name;
  return account ? `${person.name} · ${account}` : person.name;
}

/**
 * One of a person's numbers as the Number drop-down lists it: "office · (404) 555-0124 (ext. 123)".
 * @param {{label: string, display: string, e164: string, extension?: string | null}} number
 * @returns {string}
 */
export function numberLabel(number) {
  const text = `${number.label} · ${number.display || number.e164}`;
  return number.extension ? `${text} (ext. ${number.extension})` : text;
}

/**
 * mm:ss (or h:mm:ss past an hour) for a duration.
 * @param {number} ms
 * @returns {string}
 */
export function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(s).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/**
 * Keep only what an extension may hold: digits, "," (500 ms pause), "*", "#".
 * @param {string} text
 * @returns {string}
 */
export function cleanExtension(text) {
  return text.replace(/[^0-9,*#]/g, "");
}

/**
 * Whether a key is one the dial pad has.
 * @param {string} key
 * @returns {boolean}
 */
export function isDialKey(key) {
  return DIAL_KEYS.includes(key);
}

/**
 * The name to show for a caller or callee. The server sends {number, name}
 * (or, in hello's calls list, possibly a plain string).
 * @param {{number?: string, name?: string} | string | null | undefined} peer
 * @returns {string}
 */
export function peerLabel(peer) {
  if (!peer) return "Unknown caller";
  if (typeof peer === "string") return peer;
  if (peer.name && peer.number) return `${peer.name} (${peer.number})`;
  return peer.name || peer.number || "Unknown caller";
}

/**
 * Delay before reconnect attempt `attempt` (0-based): 1 s, 2 s, 4 s, 8 s, 10 s, 10 s...
 * @param {number} attempt
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt) {
  return Math.min(10000, 1000 * 2 ** Math.min(attempt, 10));
}
