/**
 * A search box that finds people (ARIA 1.2 combobox with a listbox popup):
 * 250 ms after the user stops typing it asks GET /api/v1/people?q=&limit=10
 * and lists name, title and account. Arrow keys move through the list
 * (aria-activedescendant: focus stays in the box), Enter or a click picks,
 * Escape closes the list (or, closed, empties the box). Used by the dialer's
 * people search and by History's person filter.
 *
 * @module features/person-picker
 */

import { searchPeople } from "../api.js";
import { errorText } from "../bus.js";
import { setText, show } from "../dom.js";

const SEARCH_DELAY_MS = 250;
const LIMIT = 10;

/**
 * @param {object} options
 * @param {HTMLInputElement} options.input    role="combobox", aria-controls = the list's id
 * @param {HTMLElement} options.list          role="listbox"
 * @param {HTMLElement} options.status        polite live text: how many found, or why none
 * @param {(person: import("../api.js").Person) => void} options.onPick
 */
export function mountPersonPicker({ input, list, status, onPick }) {
  /** @type {import("../api.js").Person[]} */
  let people = [];
  let active = -1;
  /** Number of the latest search: older replies are dropped. */
  let asked = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;

  const isOpen = () => !list.hidden;

  function close() {
    show(list, false);
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function open() {
    if (!people.length) return;
    show(list, true);
    input.setAttribute("aria-expanded", "true");
  }

  /** @param {number} index */
  function setActive(index) {
    active = index;
    for (const option of list.children) {
      const on = Number(/** @type {HTMLElement} */ (option).dataset.index) === index;
      option.setAttribute("aria-selected", String(on));
      if (on) {
        input.setAttribute("aria-activedescendant", option.id);
        option.scrollIntoView({ block: "nearest" });
      }
    }
  }

  /** @param {number} index */
  function pick(index) {
    const person = people[index];
    if (!person) return;
    close();
    input.value = "";
    people = [];
    setText(status, "");
    onPick(person);
  }

  function renderOptions() {
    list.replaceChildren(
      ...people.map((person, index) => {
        const option = document.createElement("li");
        option.id = `${list.id}-${index}`;
        option.className = "combo-option";
        option.setAttribute("role", "option");
        option.setAttribute("aria-selected", "false");
        option.dataset.index = String(index);
        const name = document.createElement("span");
        name.className = "option-name";
        name.textContent = person.name;
        const meta = document.createElement("span");
        meta.className = "option-meta";
        meta.textContent = [person.title, person.account?.name].filter(Boolean).join(" · ");
        option.append(name, " ", meta);
        return option;
      }),
    );
  }

  async function search() {
    const q = input.value.trim();
    asked += 1;
    const mine = asked;
    if (!q) {
      people = [];
      close();
      setText(status, "");
      return;
    }
    let found;
    try {
      found = await searchPeople(q, LIMIT);
    } catch (err) {
      if (mine !== asked) return;
      people = [];
      close();
      setText(status, errorText(err));
      return;
    }
    if (mine !== asked) return;
    people = found;
    close();
    renderOptions();
    open();
    const count = people.length;
    setText(status, count ? `${count} found. Use the arrow keys to choose.` : "No people or accounts match.");
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(search, SEARCH_DELAY_MS);
  });

  input.addEventListener("keydown", (event) => {
    const count = people.length;
    switch (event.key) {
      case "ArrowDown":
      case "ArrowUp": {
        if (!count) return;
        event.preventDefault();
        const step = event.key === "ArrowDown" ? 1 : -1;
        if (!isOpen()) open();
        setActive(active < 0 ? (step > 0 ? 0 : count - 1) : (active + step + count) % count);
        break;
      }
      case "Enter":
        if (isOpen() && active >= 0) {
          event.preventDefault();
          pick(active);
        }
        break;
      case "Escape":
        event.preventDefault();
        if (isOpen()) close();
        else {
          input.value = "";
          people = [];
          setText(status, "");
        }
        break;
      default:
    }
  });

  input.addEventListener("blur", close);
  input.addEventListener("focus", open);
  // Keep the focus in the box while the mouse picks, so blur does not close the list first.
  list.addEventListener("mousedown", (event) => event.preventDefault());
  list.addEventListener("click", (event) => {
    const option = event.target instanceof Element ? event.target.closest('[role="option"]') : null;
    if (option instanceof HTMLElement) pick(Number(option.dataset.index));
  });
}
