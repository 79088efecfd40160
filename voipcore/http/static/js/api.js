/**
 * The REST calls the page makes: the session (sign in, who am I, sign out).
 * The session itself is an HttpOnly cookie the page never sees.
 *
 * @module api
 */

const SESSION_URL = "/api/v1/session";

/**
 * @typedef {object} User
 * @property {string} username
 * @property {string} display_name
 * @property {string} extension
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
