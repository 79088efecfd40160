/**
 * Import people: the button "Import people" opens a region where a CSV file is
 * chosen. The page reads only its header row (csv-header.js) to offer the
 * mapping: which column holds the name (or first and last name), account,
 * title, email and notes, and one row per number column with its label and
 * extension column, guessed from the headers. "Check" sends the file and the
 * mapping to POST /api/v1/people/import with dry_run, "Import" without; both
 * show the report: how many rows, imported, rejected, and each rejected row's
 * line, column and reason. A 400 naming a mapping field shows below that
 * field's select; any other error shows in the region's alert.
 *
 * @module features/people-import
 */

import { importPeople } from "../api.js";
import { errorText } from "../bus.js";
import { byId, setText, show } from "../dom.js";
import { NUMBER_LABELS, PERSON_FIELDS, guessMapping, headerColumns } from "./csv-header.js";

export const name = "people-import";

const NONE = "— none —";

/**
 * One number column of the mapping, as shown.
 * @typedef {object} NumberRow
 * @property {HTMLFieldSetElement} element
 * @property {Record<NumberPart, HTMLSelectElement>} selects
 * @property {Record<NumberPart, HTMLElement>} errors
 */

/** @typedef {"column" | "label" | "extension_column"} NumberPart */

/** @type {NumberPart[]} */
const NUMBER_PARTS = ["column", "label", "extension_column"];

/** @param {import("./index.js").FeatureContext} context */
export function mount({ bus }) {
  const toggle = byId("import-toggle");
  const body = byId("import-body");
  const alert = byId("import-alert");
  const file = /** @type {HTMLInputElement} */ (byId("import-file"));
  const fileStatus = byId("import-file-status");
  const form = /** @type {HTMLFormElement} */ (byId("import-mapping"));
  const numbersHolder = byId("import-numbers");
  const numbersError = byId("import-numbers-error");
  const addButton = /** @type {HTMLButtonElement} */ (byId("import-add-number"));
  const checkButton = /** @type {HTMLButtonElement} */ (byId("import-check"));
  const importButton = /** @type {HTMLButtonElement} */ (byId("import-run"));
  const status = byId("import-status");
  const done = byId("import-done");
  const rejected = byId("import-rejected");
  const rejectedRows = byId("import-rows");
  const template = /** @type {HTMLTemplateElement} */ (byId("import-number-row"));

  /** @type {Map<string, HTMLSelectElement>} person field → its select */
  const fieldSelects = new Map();
  for (const field of PERSON_FIELDS) {
    fieldSelects.set(field, /** @type {HTMLSelectElement} */ (form.querySelector(`select[data-field="${field}"]`)));
  }

  /** The chosen file's text, as sent. */
  let text = "";
  /** @type {string[]} its columns */
  let columns = [];
  /** @type {NumberRow[]} */
  let rows = [];
  /** Number of the latest file read or sign-in: answers to older ones are dropped. */
  let asked = 0;
  /** A check or import is on its way: the file and the mapping stay as sent. */
  let busy = false;
  /** Makes the ids of number rows unique for the page's life. */
  let made = 0;

  // ----- the mapping -------------------------------------------------------

  /** @param {File | undefined} chosen */
  async function read(chosen) {
    asked += 1;
    const mine = asked;
    text = "";
    clearReport();
    clearErrors();
    showMapping([]);
    if (!chosen) {
      setText(fileStatus, "");
      return;
    }
    setText(fileStatus, "Reading the file…");
    let content;
    try {
      content = await chosen.text();
    } catch (err) {
      if (mine === asked) setText(fileStatus, `The file could not be read: ${errorText(err)}`);
      return;
    }
    if (mine !== asked) return;
    const found = headerColumns(content);
    if (!found.length) {
      setText(fileStatus, "This file has no column names on its first line.");
      return;
    }
    text = content;
    showMapping(found);
    const count = `${found.length} ${found.length === 1 ? "column" : "columns"}`;
    setText(fileStatus, `${count}. Check the guesses below, then press Check.`);
  }

  /** @param {string[]} found   the file's columns; none hides the mapping */
  function showMapping(found) {
    columns = found;
    const guess = guessMapping(found);
    for (const [field, select] of fieldSelects) {
      fillOptions(select, true);
      select.value = guess.fields[/** @type {import("./csv-header.js").PersonField} */ (field)] || "";
    }
    rows = [];
    numbersHolder.replaceChildren();
    for (const number of guess.numbers) addRow(number);
    if (found.length && !rows.length) {
      setText(numbersError, "No column looks like a phone number: add the one that holds them.");
    }
    show(form, found.length > 0);
  }

  /**
   * Options: the file's columns, after "— none —" when the field may be left out.
   * @param {HTMLSelectElement} select
   * @param {boolean} optional
   */
  function fillOptions(select, optional) {
    select.replaceChildren(...(optional ? [new Option(NONE, "")] : []), ...columns.map((c) => new Option(c, c)));
  }

  /** @param {import("./csv-header.js").NumberGuess} number */
  function addRow(number) {
    made += 1;
    const fragment = /** @type {DocumentFragment} */ (template.content.cloneNode(true));
    const element = /** @type {HTMLFieldSetElement} */ (fragment.querySelector("fieldset"));
    const selects = /** @type {Record<NumberPart, HTMLSelectElement>} */ ({});
    const errors = /** @type {Record<NumberPart, HTMLElement>} */ ({});
    for (const part of NUMBER_PARTS) {
      const id = `import-number-${made}-${part.replace("_", "-")}`;
      const select = /** @type {HTMLSelectElement} */ (element.querySelector(`select[data-part="${part}"]`));
      const error = /** @type {HTMLElement} */ (element.querySelector(`p[data-part="${part}"]`));
      const label = /** @type {HTMLLabelElement} */ (element.querySelector(`label[data-part="${part}"]`));
      select.id = id;
      label.htmlFor = id;
      error.id = `${id}-error`;
      select.setAttribute("aria-describedby", error.id);
      selects[part] = select;
      errors[part] = error;
    }
    fillOptions(selects.column, false);
    selects.label.replaceChildren(...NUMBER_LABELS.map((l) => new Option(l, l)));
    fillOptions(selects.extension_column, true);
    selects.column.value = number.column;
    selects.label.value = number.label;
    selects.extension_column.value = number.extension_column || "";
    const row = { element, selects, errors };
    element.querySelector(".import-remove")?.addEventListener("click", () => removeRow(row));
    rows.push(row);
    numbersHolder.append(fragment);
    renumber();
    return row;
  }

  /** @param {NumberRow} row */
  function removeRow(row) {
    const index = rows.indexOf(row);
    rows.splice(index, 1);
    row.element.remove();
    renumber();
    changed();
    const next = rows[index] || rows[index - 1];
    (next ? /** @type {HTMLElement} */ (next.element.querySelector(".import-remove")) : addButton).focus();
  }

  /** Rows are named "Number 1", "Number 2"... in order, and so are their Remove buttons. */
  function renumber() {
    rows.forEach((row, index) => {
      const legend = /** @type {HTMLElement} */ (row.element.querySelector("legend"));
      const removeSuffix = /** @type {HTMLElement} */ (row.element.querySelector(".import-remove .visually-hidden"));
      setText(legend, `Number ${index + 1}`);
      setText(removeSuffix, ` number ${index + 1}`);
    });
  }

  /** The mapping as POST /api/v1/people/import takes it. */
  function mapping() {
    /** @type {Record<string, unknown>} */
    const result = {};
    for (const [field, select] of fieldSelects) result[field] = select.value || null;
    result.numbers = rows.map((row) => ({
      column: row.selects.column.value,
      label: row.selects.label.value,
      extension_column: row.selects.extension_column.value || null,
    }));
    return result;
  }

  // ----- check and import ---------------------------------------------------

  /** @param {boolean} dryRun */
  async function send(dryRun) {
    clearReport();
    clearErrors();
    if (!rows.length) {
      setText(numbersError, "Add a number column: every person needs a phone number.");
      addButton.focus();
      return;
    }
    const mine = asked;
    setBusy(true);
    setText(status, dryRun ? "Checking…" : "Importing…");
    try {
      const report = await importPeople(text, mapping(), dryRun);
      if (mine !== asked) return;
      setBusy(false);
      showReport(report, dryRun);
    } catch (err) {
      if (mine !== asked) return;
      setBusy(false);
      setText(status, "");
      showError(err);
    }
  }

  /**
   * @param {import("../api.js").ImportReport} report
   * @param {boolean} dryRun
   */
  function showReport(report, dryRun) {
    const counted = `${report.rows} ${report.rows === 1 ? "row" : "rows"}`;
    const would = dryRun ? "would be imported" : "imported";
    setText(status, `${counted}: ${report.imported} ${would}, ${report.rejected} rejected.`);
    if (!dryRun) {
      setText(done, `${report.people.length} ${report.people.length === 1 ? "person" : "people"} imported.`);
    }
    rejectedRows.replaceChildren(
      ...report.errors.map((error) => {
        const tr = document.createElement("tr");
        // The reason starts with its column's name, which has a cell of its own here.
        const reason = error.column ? error.reason.replace(`${error.column}: `, "") : error.reason;
        for (const value of [String(error.line), error.column || "", reason]) {
          const td = document.createElement("td");
          td.textContent = value;
          tr.append(td);
        }
        return tr;
      }),
    );
    show(rejected, report.errors.length > 0);
  }

  /** @param {boolean} sending */
  function setBusy(sending) {
    busy = sending;
    for (const control of [file, checkButton, importButton]) control.disabled = sending;
  }

  function clearReport() {
    setText(status, "");
    setText(done, "");
    rejectedRows.replaceChildren();
    show(rejected, false);
  }

  /**
   * Below the select the server's field names ("mapping.numbers.1.column"), or in the alert.
   * @param {unknown} err
   */
  function showError(err) {
    const field = /** @type {{field?: string}} */ (err).field || "";
    const words = field ? errorText(err).replace(`${field}: `, "") : errorText(err);
    const target = fieldTarget(field);
    if (!target) {
      setText(alert, words);
      return;
    }
    setText(target.error, words);
    if (target.select) {
      target.select.setAttribute("aria-invalid", "true");
      target.select.focus();
    }
  }

  /**
   * @param {string} field   e.g. "mapping.title", "mapping.numbers.0.extension_column"
   * @returns {{select: HTMLSelectElement | null, error: HTMLElement} | null}
   */
  function fieldTarget(field) {
    if (field === "mapping.numbers") return { select: null, error: numbersError };
    const number = /^mapping\.numbers\.(\d+)\.(column|label|extension_column)$/.exec(field);
    if (number) {
      const row = rows[Number(number[1])];
      const part = /** @type {NumberPart} */ (number[2]);
      return row ? { select: row.selects[part], error: row.errors[part] } : null;
    }
    const select = field.startsWith("mapping.") ? fieldSelects.get(field.slice("mapping.".length)) : undefined;
    return select ? { select, error: byId(`${select.id}-error`) } : null;
  }

  function clearErrors() {
    setText(alert, "");
    setText(numbersError, "");
    for (const select of form.querySelectorAll("select")) {
      select.removeAttribute("aria-invalid");
      const error = document.getElementById(`${select.id}-error`);
      if (error) setText(error, "");
    }
  }

  /** The mapping changed: the report no longer says what it would do. */
  function changed() {
    if (busy) return;
    clearReport();
    clearErrors();
  }

  // ----- events ---------------------------------------------------------------

  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    show(body, open);
  });

  file.addEventListener("change", () => read(file.files?.[0]));
  form.addEventListener("change", changed);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(true);
  });
  importButton.addEventListener("click", () => send(false));
  addButton.addEventListener("click", () => {
    const used = new Set(rows.map((row) => row.selects.column.value));
    const column = columns.find((c) => !used.has(c)) || columns[0];
    changed();
    addRow({ column, label: NUMBER_LABELS[0], extension_column: null }).selects.column.focus();
  });

  bus.on("session", () => {
    asked += 1;
    text = "";
    file.value = "";
    setText(fileStatus, "");
    setBusy(false);
    clearReport();
    clearErrors();
    showMapping([]);
    toggle.setAttribute("aria-expanded", "false");
    show(body, false);
  });
}
