/**
 * Where the dialer's features plug in. Each is one module in this folder
 * exporting `name` and `mount(context)`, listed in FEATURES, with its markup
 * in the matching `data-slot` element of index.html (hidden until it mounts):
 *
 *   people.js       people & numbers search      slot "people"       (fills #number, adds person_id to "dial")
 *   call-log.js     "Log this call"              slot "call-log"     (bus "calls": ended calls; "log-call")
 *   history.js      call history, dispositions   slot "history"      (GET /api/v1/calls; emits "log-call", "history-row")
 *   people-import.js "Import people" from CSV    slot "people-import" (POST /api/v1/people/import)
 *   passthrough.js  pass-through switch, Settings slot "passthrough" (GET/PUT /api/v1/settings;
 *                                                 sets calls.passthrough; "message:passthrough")
 *   conference.js   "Invite", the parties       slot "conference"   ("invite", "remove"; "message:participants")
 *   recording.js    Record / Pause / Stop        slot "recording"    ("record"; "message:recording", hello's
 *                                                 policy; players under History's rows: "history-row")
 *
 * Slots waiting for their feature: "quality" (bus "calls": call.quality).
 *
 * Helpers here that are not features: person-picker.js (the people search box,
 * used by people.js and history.js), dispositions.js (the shared list) and
 * csv-header.js (a CSV file's columns and what they seem to hold).
 *
 * A feature talks to the rest only through the context: it listens on the
 * bus ("calls", "message:<type>", "connection", "session", "number"), adds to
 * an outgoing "dial" on the bus event "dial", sends with `connection.send`,
 * and acts on calls through `calls`. To put a number in the dialer, set
 * #number's value and dispatch an "input" event on it.
 *
 * @module features
 */

import * as callLog from "./call-log.js";
import * as conference from "./conference.js";
import * as history from "./history.js";
import * as passthrough from "./passthrough.js";
import * as peopleImport from "./people-import.js";
import * as people from "./people.js";
import * as recording from "./recording.js";

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

/** @type {Feature[]} the features this page has, mounted in this order */
export const FEATURES = [people, callLog, history, peopleImport, conference, passthrough, recording];

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
