/**
 * Where the dialer's later features plug in. Each is one module in this
 * folder exporting `mount(context)`, listed in FEATURES, with its markup in
 * the matching `data-slot` element of index.html (hidden until it mounts):
 *
 *   people.js       people & numbers search      slot "people"       (fills #number, see below)
 *   passthrough.js  pass-through toggle          slot "passthrough"  (adds to the "dial" message)
 *   recording.js    record / stop                slot "recording"    (calls.current, new messages)
 *   conference.js   invite a colleague           slot "conference"
 *   quality.js      live quality indicator       slot "quality"      (bus "calls": call.quality)
 *   history.js      call history, dispositions   slot "history"      (bus "calls": ended calls)
 *
 * A feature talks to the rest only through the context: it listens on the
 * bus ("calls", "message:<type>", "connection", "session"), sends with
 * `connection.send`, and acts on calls through `calls`. To put a number in
 * the dialer, set #number's value and dispatch an "input" event on it.
 *
 * @module features
 */

/**
 * @typedef {object} FeatureContext
 * @property {import("../bus.js").Bus} bus
 * @property {import("../connection.js").Connection} connection
 * @property {import("../calls.js").CallController} calls
 * @property {(name: string) => HTMLElement | null} slot   the feature's data-slot element
 */

/**
 * @typedef {object} Feature
 * @property {string} name
 * @property {(context: FeatureContext) => void} mount
 */

/** @type {Feature[]} the features this page has (none yet) */
export const FEATURES = [];

/**
 * Mount every feature; one that fails is reported and the rest still mount.
 * @param {FeatureContext} context
 */
export function mountFeatures(context) {
  for (const feature of FEATURES) {
    try {
      feature.mount(context);
      const slot = context.slot(feature.name);
      if (slot) slot.hidden = false;
    } catch (err) {
      context.bus.emit("alert", { text: `The ${feature.name} feature could not start.` });
    }
  }
}
