/**
 * People search in the dialer: "Search people or accounts" above the pad.
 * Picking a person puts their primary number in Number (through the server's
 * preview, like typing) and its extension in Extension, and shows the person
 * with a "Number" drop-down of all their numbers; choosing another switches
 * both fields. The "dial" then carries the person's id ("person_id") and the
 * call remembers the person (call.person) for "Log this call".
 *
 * Editing Number by hand keeps the person only while the server's reading of
 * it is one of their numbers.
 *
 * @module features/people
 */

import { byId } from "../dom.js";
import { numberLabel, personLine } from "../format.js";
import { mountPersonPicker } from "./person-picker.js";

export const name = "people";

/** @param {import("./index.js").FeatureContext} context */
export function mount({ bus, calls }) {
  const number = /** @type {HTMLInputElement} */ (byId("number"));
  const extension = /** @type {HTMLInputElement} */ (byId("extension"));
  const search = /** @type {HTMLInputElement} */ (byId("people-search"));
  const holder = byId("person");
  const template = /** @type {HTMLTemplateElement} */ (byId("person-card"));

  /** @type {import("../api.js").Person | null} */
  let person = null;
  /** @type {import("../api.js").PersonNumber | null} the number in the Number field */
  let chosen = null;
  /** @type {HTMLSelectElement | null} */
  let select = null;

  mountPersonPicker({
    input: search,
    list: byId("people-results"),
    status: byId("people-search-status"),
    onPick: pick,
  });

  /** @param {import("../api.js").Person} picked */
  function pick(picked) {
    if (calls.busy) {
      bus.emit("alert", { text: "Hang up before you pick someone else to call." });
      return;
    }
    if (!picked.numbers.length) {
      bus.emit("alert", { text: `${picked.name} has no phone number yet.` });
      return;
    }
    person = picked;
    showCard(picked);
    use(picked.numbers.find((n) => n.primary) || picked.numbers[0]);
  }

  /** @param {import("../api.js").PersonNumber} chosenNumber */
  function use(chosenNumber) {
    chosen = chosenNumber;
    if (select) select.value = String(chosenNumber.id);
    fill(number, chosenNumber.e164);
    fill(extension, chosenNumber.extension || "");
  }

  /** @param {import("../api.js").Person} picked */
  function showCard(picked) {
    const card = /** @type {DocumentFragment} */ (template.content.cloneNode(true));
    const group = /** @type {HTMLElement} */ (card.querySelector(".person-card"));
    const nameLine = /** @type {HTMLElement} */ (card.querySelector(".person-name"));
    const title = /** @type {HTMLElement} */ (card.querySelector(".person-title"));
    nameLine.id = "person-name";
    nameLine.textContent = personLine(picked);
    group.setAttribute("aria-labelledby", nameLine.id);
    title.textContent = picked.title || "";
    title.hidden = !picked.title;
    select = /** @type {HTMLSelectElement} */ (card.querySelector("select"));
    select.disabled = calls.busy;
    for (const option of picked.numbers) {
      select.append(new Option(numberLabel(option), String(option.id)));
    }
    select.addEventListener("change", () => {
      const next = person?.numbers.find((n) => String(n.id) === select?.value);
      if (next) use(next);
    });
    card.querySelector(".person-clear")?.addEventListener("click", () => {
      if (!calls.busy && chosen && number.value === chosen.e164) {
        fill(number, "");
        fill(extension, "");
      }
      forget();
      search.focus();
    });
    holder.replaceChildren(card);
  }

  function forget() {
    person = null;
    chosen = null;
    select = null;
    holder.replaceChildren();
  }

  // The server's reading of the Number field: still one of the person's numbers?
  bus.on("number", (/** @type {{input: string, e164?: string}} */ preview) => {
    if (!person || (chosen && preview.e164 === chosen.e164)) return;
    const match = person.numbers.find((n) => n.e164 === preview.e164);
    if (!match) {
      forget();
      return;
    }
    chosen = match;
    if (select) select.value = String(match.id);
  });

  // The fields are read-only during a call, and so is the choice of number.
  bus.on("calls", () => {
    if (select) select.disabled = calls.busy;
  });

  bus.on("dial", ({ message, call }) => {
    if (!person || !chosen || message.to !== chosen.e164) return;
    message.person_id = person.id;
    call.person = { id: person.id, name: person.name, account: person.account?.name || "" };
  });

  bus.on("session", ({ user }) => {
    if (!user) forget();
  });
}

/**
 * Set a field as if typed, so its own listeners (the number preview) run.
 * @param {HTMLInputElement} field
 * @param {string} value
 */
function fill(field, value) {
  field.value = value;
  field.dispatchEvent(new Event("input", { bubbles: true }));
}
