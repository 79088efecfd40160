/**
 * The header row of a CSV file (RFC 4180: commas, double quotes, "" inside
 * quotes, a quoted cell may hold commas and line breaks) and a first guess at
 * which column holds what, for "Import people". Pure: no DOM, no state.
 *
 * @module features/csv-header
 */

/** The person fields a column may fill, in form order. */
export const PERSON_FIELDS = /** @type {const} */ (["name", "first_name", "last_name", "account", "title", "email", "notes"]);

/** @typedef {typeof PERSON_FIELDS[number]} PersonField */

/** Labels a number row offers; the first is the default. */
export const NUMBER_LABELS = ["mobile", "office", "home", "other"];

/** Headers (as {@link words} reads them) that name each person field. */
const FIELD_HEADERS = {
  name: ["name", "full name", "fullname", "contact", "contact name"],
  first_name: ["first name", "firstname", "first", "given name"],
  last_name: ["last name", "lastname", "last", "surname", "family name"],
  account: ["company", "company name", "account", "account name", "organization", "organisation"],
  title: ["title", "job title", "position", "role"],
  email: ["email", "e mail", "email address", "e mail address"],
  notes: ["notes", "note", "comments", "comment"],
};

/** Words of a header that make it a phone number column, and the label each suggests. */
const PHONE_WORDS = new Map([
  ["mobile", "mobile"],
  ["cell", "mobile"],
  ["cellphone", "mobile"],
  ["office", "office"],
  ["work", "office"],
  ["business", "office"],
  ["direct", "office"],
  ["home", "home"],
  ["phone", "other"],
  ["telephone", "other"],
  ["tel", "other"],
]);

/** Words of a header that make it an extension column. */
const EXTENSION_WORDS = new Set(["ext", "extension"]);

/**
 * The column names of a file's first row, trimmed, without empty or repeated ones.
 * @param {string} text   the whole file (a leading BOM is skipped)
 * @returns {string[]}
 */
export function headerColumns(text) {
  const cells = [];
  let cell = "";
  let quoted = false;
  let at = text.startsWith("\ufeff") ? 1 : 0;
  for (; at < text.length; at += 1) {
    const char = text[at];
    if (quoted) {
      if (char !== '"') cell += char;
      else if (text[at + 1] === '"') {
        cell += '"';
        at += 1;
      } else quoted = false;
    } else if (char === '"') quoted = true;
    else if (char === ",") {
      cells.push(cell);
      cell = "";
    } else if (char === "\n" || char === "\r") break;
    else cell += char;
  }
  cells.push(cell);
  return [...new Set(cells.map((c) => c.trim()).filter(Boolean))];
}

/**
 * @typedef {object} NumberGuess
 * @property {string} column
 * @property {string} label                  one of NUMBER_LABELS
 * @property {string | null} extension_column
 */

/**
 * @typedef {object} MappingGuess
 * @property {Record<PersonField, string | null>} fields
 * @property {NumberGuess[]} numbers   one per phone-like column, in file order
 */

/**
 * Which column seems to hold what. A whole-name column wins over first and last
 * name (the server takes one or the other). An extension column goes with the
 * number column it shares a word with ("Office Ext" with "Office Phone"), or,
 * named just "Ext", with the first office number (else the first number).
 * @param {string[]} columns
 * @returns {MappingGuess}
 */
export function guessMapping(columns) {
  const fields = /** @type {Record<PersonField, string | null>} */ ({});
  for (const field of PERSON_FIELDS) {
    fields[field] = columns.find((c) => FIELD_HEADERS[field].includes(words(c).join(" "))) || null;
  }
  if (fields.name) {
    fields.first_name = null;
    fields.last_name = null;
  }

  /** @type {NumberGuess[]} */
  const numbers = [];
  const extensions = [];
  for (const column of columns) {
    const parts = words(column);
    if (parts.some((w) => EXTENSION_WORDS.has(w))) extensions.push(column);
    else {
      const label = parts.map((w) => PHONE_WORDS.get(w)).find(Boolean);
      if (label) numbers.push({ column, label, extension_column: null });
    }
  }
  for (const column of extensions) {
    const own = words(column).filter((w) => !EXTENSION_WORDS.has(w) && PHONE_WORDS.get(w) !== "other");
    const free = numbers.filter((n) => !n.extension_column);
    const match = own.length
      ? free.find((n) => own.some((w) => words(n.column).includes(w)))
      : free.find((n) => n.label === "office") || free[0];
    if (match) match.extension_column = column;
  }
  return { fields, numbers };
}

/**
 * A header as lower-case words: "E-mail" → ["e", "mail"], "Job_Title" → ["job", "title"].
 * @param {string} header
 * @returns {string[]}
 */
function words(header) {
  return header.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
}
