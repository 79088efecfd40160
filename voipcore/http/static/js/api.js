/**
 * The REST calls the page makes: the session (sign in, who am I, sign out),
 * and the sales data (people and their CSV import, dispositions, the call log,
 * users). The session itself is an HttpOnly cookie the page never sees. The
 * API is described by GET /api/v1/openapi.json.
 *
 * @module api
 */

const SESSION_URL = "/api/v1/session";
const API = "/api/v1";

/**
 * @typedef {object} User
 * @property {string} username
 * @property {string} display_name
 * @property {string} extension
 * @property {"admin" | "rep"} [role]
 */

/**
 * @typedef {object} SignInResult
 * @property {User} [user]        set when signed in
 * @property {string} [error]     text to show when not
 */

/**
 * Who is signed in, or null. Network failures are thrown.
 * @returns {Promise<User | null>}
 */
export async function currentUser() {
  const response = await fetch(SESSION_URL, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) throw new Error(`The server answered ${response.status}.`);
  const body = await response.json();
  return body.username ? /** @type {User} */ (body) : null;
}

/**
 * Sign in. Never throws: every outcome comes back as text to show.
 * @param {string} username
 * @param {string} password
 * @returns {Promise<SignInResult>}
 */
export async function signIn(username, password) {
  let response;
  try {
    response = await fetch(SESSION_URL, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
  } catch {
    return { error: "Could not reach the server. Check your connection and try again." };
  }
  if (response.ok) return { user: await response.json() };
  const message = await errorMessage(response);
  if (response.status === 401) {
    return { error: message || "Wrong username or password." };
  }
  if (response.status === 429) {
    const wait = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    const base = message || "Too many sign-in attempts.";
    return { error: Number.isFinite(wait) ? `${base} Try again in ${wait} s.` : base };
  }
  return { error: message || `Sign-in failed (${response.status}).` };
}

/**
 * Sign out. Failures are ignored: the page forgets the user either way.
 * @returns {Promise<void>}
 */
export async function signOut() {
  try {
    await fetch(SESSION_URL, { method: "DELETE", credentials: "same-origin" });
  } catch {
    // Offline: the cookie expires on its own; the page still shows sign-in.
  }
}

/** A REST error: the server's words and, when one field is at fault, its name. */
class ApiError extends Error {
  /**
   * @param {string} message
   * @param {number} status   HTTP status, 0 when the server was not reached
   * @param {string} [field]  e.g. "notes", "numbers.0.number"
   */
  constructor(message, status, field) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.field = field || "";
  }
}

/**
 * @typedef {Record<string, string | number | null | undefined>} Query
 *   query parameters; empty, null and undefined ones are left out
 */

/**
 * A path with its query string.
 * @param {string} path    under /api/v1, e.g. "/calls"
 * @param {Query} [query]
 * @returns {string}
 */
function apiUrl(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return `${API}${path}${text ? `?${text}` : ""}`;
}

/**
 * One JSON request. Resolves to the reply's body (null for 204); any failure
 * is thrown as an ApiError carrying words to show.
 * @param {string} method
 * @param {string} path
 * @param {{query?: Query, body?: unknown}} [options]
 * @returns {Promise<any>}
 */
async function request(method, path, { query, body } = {}) {
  /** @type {RequestInit} */
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers = { ...init.headers, "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch {
    throw new ApiError("Could not reach the server. Check your connection and try again.", 0);
  }
  if (response.status === 204) return null;
  let reply = null;
  try {
    reply = await response.json();
  } catch {
    // an empty or non-JSON body: the status says enough
  }
  if (response.ok) return reply;
  const text = typeof reply?.error === "string" ? reply.error : `The server answered ${response.status}.`;
  throw new ApiError(text, response.status, typeof reply?.field === "string" ? reply.field : "");
}

/**
 * @typedef {object} PersonNumber
 * @property {number} id
 * @property {string} label      "mobile", "office", ...
 * @property {string} e164
 * @property {string | null} extension
 * @property {boolean} primary
 * @property {string} display    national format, e.g. "(404) 555-1234"
 */

/**
 * @typedef {object} Person
 * @property {number} id
 * @property {string} name
 * @property {string | null} title
 * @property {{id: number, name: string} | null} account
 * @property {PersonNumber[]} numbers
 */

/**
 * @typedef {object} Page   one page of a list
 * @property {any[]} items
 * @property {string | null} next_cursor
 */

/**
 * People whose name, account or number matches `q`.
 * @param {string} q
 * @param {number} limit
 * @returns {Promise<Person[]>}
 */
export async function searchPeople(q, limit) {
  const page = await request("GET", "/people", { query: { q, limit } });
  return page.items;
}

/**
 * @typedef {object} ImportReport   what POST /api/v1/people/import did (or, dry, would do)
 * @property {number} rows
 * @property {number} imported
 * @property {number} rejected
 * @property {number[]} people      ids created (none on a dry run)
 * @property {{line: number, column: string | null, reason: string}[]} errors   one per rejected row
 */

/**
 * Import people from a CSV file's text; a 400 names the mapping's field at fault
 * (e.g. "mapping.numbers.1.column").
 * @param {string} csv
 * @param {object} mapping   see docs/browser-protocol.md
 * @param {boolean} dryRun   check and report only
 * @returns {Promise<ImportReport>}
 */
export function importPeople(csv, mapping, dryRun) {
  return request("POST", "/people/import", { body: { csv, mapping, dry_run: dryRun } });
}

/**
 * The dispositions a rep may log, in order.
 * @returns {Promise<{code: string, label: string}[]>}
 */
export async function listDispositions() {
  const page = await request("GET", "/dispositions");
  return page.items;
}

/**
 * The team's users (admins only).
 * @returns {Promise<User[]>}
 */
export async function listUsers() {
  const page = await request("GET", "/users");
  return page.items;
}

/**
 * One page of the call log, newest first.
 * @param {Query} filters   since, until, user, person_id, disposition
 * @param {string | null} cursor
 * @param {number} limit
 * @returns {Promise<Page>}
 */
export function listCalls(filters, cursor, limit) {
  return request("GET", "/calls", { query: { ...filters, cursor, limit } });
}

/**
 * The CSV export of the call log with these filters.
 * @param {Query} filters
 * @returns {string}
 */
export function callsCsvUrl(filters) {
  return apiUrl("/calls.csv", filters);
}

/**
 * Log a call's outcome; resolves to the call as the log now has it.
 * @param {string} callId
 * @param {string | null} disposition
 * @param {string | null} notes
 * @returns {Promise<any>}
 */
export function saveDisposition(callId, disposition, notes) {
  return request("PUT", `/calls/${encodeURIComponent(callId)}/disposition`, { body: { disposition, notes } });
}

/**
 * @typedef {object} Settings   the signed-in user's own (GET /api/v1/settings)
 * @property {string | null} passthrough_number   E.164
 * @property {boolean} passthrough_available      the server can place pass-through calls
 * @property {number} passthrough_legs             carrier legs such a call is billed for
 * @property {number | null} rate_per_minute       USD per billable minute per leg
 */

/** @returns {Promise<Settings>} */
export function getSettings() {
  return request("GET", "/settings");
}

/**
 * Save the pass-through number (any common format; null turns it off).
 * @param {string | null} passthroughNumber
 * @returns {Promise<Settings>}
 */
export function saveSettings(passthroughNumber) {
  return request("PUT", "/settings", { body: { passthrough_number: passthroughNumber } });
}

/**
 * @typedef {object} RecordingInfo   one item of GET /api/v1/calls/{id}/recordings
 * @property {string} id
 * @property {string} url                 where the WAV file is (with the session cookie)
 * @property {string} started_at
 * @property {number | null} duration     seconds
 * @property {string | null} expired_at   set once the retention period deleted the file
 */

/**
 * A call's recordings, oldest first.
 * @param {string} callId
 * @returns {Promise<RecordingInfo[]>}
 */
export async function listRecordings(callId) {
  const list = await request("GET", `/calls/${encodeURIComponent(callId)}/recordings`);
  return list.items;
}

/**
 * The "error" text of a JSON error body, or "".
 * @param {Response} response
 * @returns {Promise<string>}
 */
async function errorMessage(response) {
  try {
    const body = await response.json();
    return typeof body?.error === "string" ? body.error : "";
  } catch {
    return "";
  }
}
