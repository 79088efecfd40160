/**
 * The team's dispositions (GET /api/v1/dispositions), asked once per signed-in
 * user and shared by "Log this call" and History.
 *
 * @module features/dispositions
 */

import { listDispositions } from "../api.js";

/** @type {{username: string, list: Promise<{code: string, label: string}[]>} | null} */
let cached = null;

/**
 * The dispositions for this user's session (one request, however many ask).
 * @param {string} username
 * @returns {Promise<{code: string, label: string}[]>}
 */
export function dispositionsFor(username) {
  if (!cached || cached.username !== username) {
    const list = listDispositions();
    cached = { username, list };
    // A failed load is asked again next time rather than remembered.
    list.catch(() => {
      if (cached && cached.list === list) cached = null;
    });
  }
  return cached.list;
}

/**
 * Fill a <select> with the dispositions after its first (empty) option.
 * @param {HTMLSelectElement} select
 * @param {{code: string, label: string}[]} items
 */
export function fillDispositions(select, items) {
  const keep = select.value;
  const first = select.options[0];
  select.replaceChildren(first, ...items.map((item) => new Option(item.label, item.code)));
  select.value = items.some((item) => item.code === keep) ? keep : "";
}
