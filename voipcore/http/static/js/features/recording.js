/**
 * Recording: during a connected call, "Record" starts recording it, "Pause
 * recording" / "Resume recording" pause and resume, "Stop recording" stops
 * ({"type": "record"}). The server tells every page in the call what the
 * recording does ({"type": "recording"}); the page shows it as a "Recording"
 * (or "Recording paused") status with a red dot. The install's policy comes
 * in hello ("recording"): "never" shows nothing, "always" shows the state and
 * Pause / Resume only (every call is recorded from its answer), "rep" all four.
 *
 * In History, a call with recordings gets a row below it with an audio player
 * for each (GET /api/v1/calls/{id}/recordings; the file comes with the session
 * cookie from GET /api/v1/recordings/{id}).
 *
 * @module features/recording
 */

import { listRecordings } from "../api.js";
import { byId, setText, show } from "../dom.js";

export const name = "recording";

/** The status's words for each state a recording can be in while the call lasts. */
const WORDS = { recording: "Recording", paused: "Recording paused" };

/** @param {import("./index.js").FeatureContext} context */
export function mount({ bus, connection }) {
  const status = byId("recording-state");
  const controls = byId("recording-controls");
  const start = /** @type {HTMLButtonElement} */ (byId("record-start"));
  const pause = byId("record-pause");
  const resume = byId("record-resume");
  const stop = byId("record-stop");

  /** @type {"never" | "always" | "rep"} */
  let policy = "rep";
  /** @type {import("../calls.js").Call | null} */
  let current = null;
  /** @type {Map<string, string>} each call's recording state, by call id */
  const states = new Map();
  let refs = 0;

  bus.on("message:hello", (message) => {
    policy = message.recording || "rep";
    // A page that reconnects mid-call learns where each call's recording is.
    for (const entry of message.calls || []) {
      if (entry.recording) states.set(entry.call, entry.recording);
    }
    render();
  });
  bus.on("session", () => {
    states.clear();
    render();
  });
  bus.on("calls", (/** @type {import("../calls.js").CallsSnapshot} */ { current: call }) => {
    current = call;
    render();
  });
  bus.on("message:recording", (message) => {
    states.set(message.call, message.state);
    render();
  });
  bus.on("history-row", ({ call, row, about }) => addPlayers(call, row, about));

  start.addEventListener("click", () => act("start"));
  pause.addEventListener("click", () => act("pause"));
  resume.addEventListener("click", () => act("resume"));
  stop.addEventListener("click", () => act("stop"));

  /** @param {"start" | "pause" | "resume" | "stop"} action */
  function act(action) {
    if (!current || !current.id) return;
    const message = { type: "record", ref: `record-${++refs}`, call: current.id, action };
    if (!connection.send(message)) {
      bus.emit("alert", { text: "Not connected to the server; try again in a moment." });
    }
  }

  function render() {
    const call = current;
    const connected = Boolean(call && call.id && call.state === "connected");
    const state = connected && call && call.id ? states.get(call.id) || "stopped" : "stopped";
    show(controls, policy !== "never");
    show(start, policy === "rep" && state === "stopped");
    start.disabled = !connected;
    show(pause, state === "recording");
    show(resume, state === "paused");
    show(stop, policy === "rep" && state !== "stopped");
    const words = /** @type {Record<string, string>} */ (WORDS)[state] || "";
    status.dataset.state = state;
    setText(status, words);
    show(status, Boolean(words));
  }

  /**
   * Audio players for a History row's recordings, in a row of their own below it.
   * @param {any} call          one item of GET /api/v1/calls
   * @param {HTMLTableRowElement} row
   * @param {string} about      "who, when" for the players' names
   */
  async function addPlayers(call, row, about) {
    if (!call.answered_at || !call.ended_at) return;
    let recordings;
    try {
      recordings = (await listRecordings(call.call_id)).filter((r) => !r.expired_at);
    } catch {
      return; // the row stays as it is; History has its own status for failures
    }
    if (!recordings.length || !row.isConnected) return;
    const cell = document.createElement("td");
    cell.colSpan = row.cells.length;
    recordings.forEach((recording, index) => {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "metadata";
      audio.src = recording.url;
      const which = recordings.length > 1 ? ` ${index + 1} of ${recordings.length}` : "";
      audio.setAttribute("aria-label", `Recording${which} of the call with ${about}`);
      cell.append(audio);
    });
    const extra = document.createElement("tr");
    extra.className = "history-recordings";
    extra.append(cell);
    row.after(extra);
  }
}
