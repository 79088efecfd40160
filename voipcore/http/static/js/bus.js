/**
 * The page's event bus: the one place modules meet.
 *
 * Modules never call each other's UI code; they emit and listen here. A later
 * feature (people search, recording, history, quality...) subscribes to the
 * events it needs without the dialer knowing it exists.
 *
 * Events used today (detail in parentheses):
 *   "session"      ({user} | {user: null})        signed in / signed out
 *   "connection"   ({state})                      "connecting" | "connected" | "reconnecting" | "offline"
 *   "message"      (msg)                          every server message, after "message:<type>"
 *   "message:<t>"  (msg)                          one server message type, e.g. "message:quality"
 *   "calls"        ({calls, current, incoming})   call list changed (see calls.js)
 *   "alert"        ({text} | {text: ""})          show or clear the role="alert" message
 *   "number"       ({input, e164, display, error}) the Number field's server preview
 *                                                  ({input: ""} when the field is emptied)
 *   "dial"         ({message, call})              a "dial" is about to go: listeners may add
 *                                                  fields to message and set call.person
 *   "log-call"     ({entry})                      bring a call to the "Log this call" form:
 *                                                  {callId, summary, disposition, notes}
 *   "call-logged"  ({call})                       a call's disposition was saved (its JSON)
 *
 * @module bus
 */

/** @typedef {(detail: any) => void} Listener */

export class Bus {
  constructor() {
    /** @type {Map<string, Set<Listener>>} */
    this.listeners = new Map();
  }

  /**
   * Listen to one event type.
   * @param {string} type
   * @param {Listener} listener
   * @returns {() => void} call to stop listening
   */
  on(type, listener) {
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  /**
   * Deliver an event to every listener. A listener that throws does not stop
   * the others; the failure is shown to the user as an alert instead of
   * escaping as an uncaught error.
   * @param {string} type
   * @param {any} [detail]
   */
  emit(type, detail) {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(detail);
      } catch (err) {
        if (type === "alert") continue; // never loop on a broken alert listener
        this.emit("alert", { text: `Something went wrong: ${errorText(err)}` });
      }
    }
  }
}

/**
 * A readable one-line text for any thrown value.
 * @param {unknown} err
 * @returns {string}
 */
export function errorText(err) {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** The page's single bus. */
export const bus = new Bus();
