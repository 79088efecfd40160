/**
 * Small DOM helpers shared by the views.
 *
 * @module dom
 */

/**
 * The element with this id; a missing one is a bug in index.html, said plainly.
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`index.html has no #${id}`);
  return /** @type {T} */ (element);
}

/**
 * Set text only when it changes, so live regions do not re-announce it.
 * @param {HTMLElement} element
 * @param {string} text
 */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/**
 * Show or hide with the `hidden` attribute.
 * @param {HTMLElement} element
 * @param {boolean} visible
 */
export function show(element, visible) {
  element.hidden = !visible;
}

/**
 * Whether keyboard input aimed at this element is typing into a field.
 * @param {EventTarget | null} target
 * @returns {boolean}
 */
export function isTypingTarget(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) {
    return !target.readOnly && !["button", "submit", "checkbox", "radio", "range"].includes(target.type);
  }
  return false;
}
