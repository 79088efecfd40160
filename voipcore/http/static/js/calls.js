/**
 * Call control: what the page's calls are, and the protocol messages that
 * change them. No DOM here except the audio element handed to CallMedia; the
 * views read snapshots from the bus ("calls") and call the methods below.
 *
 * States of a call on the page:
 *
 *   starting   outbound: microphone and offer being prepared, nothing sent yet
 *   dialling   outbound: "dial" sent (call id known once "dialling" arrives)
 *   ringing    outbound: the far end rings ("ringing")
 *   incoming   inbound: ringing here ("incoming"), not yet answered
 *   answering  inbound: "answer" sent, waiting for "answered"
 *   connected  both: answered; `held` and `muted` are flags on top
 *   ended      both: over; `endedText` says why
 *
 * Transitions live in one table, TRANSITIONS; a message that would make an
 * illegal move (a late "ringing" after "answered", say) is ignored.
 *
 * The page shows one call at a time in the dialer (`current`); an incoming
 * call can ring while another is up, and answering it hangs the other up.
 *
 * @module calls
 */

import { CallMedia, MediaError } from "./media.js";
import { endedText, peerLabel } from "./format.js";

/** @typedef {"starting"|"dialling"|"ringing"|"incoming"|"answering"|"connected"|"ended"} CallState */

/** @type {Record<CallState, CallState[]>} which states each state may move to */
const TRANSITIONS = {
  starting: ["dialling", "ended"],
  dialling: ["ringing", "connected", "ended"],
  ringing: ["connected", "ended"],
  incoming: ["answering", "ended"],
  answering: ["connected", "incoming", "ended"],
  connected: ["ended"],
  ended: [],
};

/** States in which a call still counts as "in progress". */
const LIVE = new Set(["starting", "dialling", "ringing", "answering", "connected"]);

/** One call as the page knows it. */
export class Call {
  /**
   * @param {object} init
   * @param {"outbound"|"inbound"} init.direction
   * @param {CallState} init.state
   * @param {string | null} [init.id]      the server's call id ("call")
   * @param {string | null} [init.ref]     the "dial" request's ref
   * @param {any} [init.peer]              {number, name} or a string
   */
  constructor({ direction, state, id = null, ref = null, peer = null }) {
    /** @type {string | null} */
    this.id = id;
    /** @type {string | null} */
    this.ref = ref;
    this.direction = direction;
    /** @type {CallState} */
    this.state = state;
    this.peer = peer;
    /** Put on hold by this page ("Hold" pressed). */
    this.held = false;
    /** Put on hold by the other side. */
    this.heldByPeer = false;
    this.muted = false;
    /** @type {number | null} epoch ms when answered; the timer counts from here */
    this.answeredAt = null;
    /** @type {number | null} epoch ms when it ended; the timer stops here */
    this.endedAt = null;
    this.endedText = "";
    /** Digits the far end pressed, newest last. */
    this.digitsReceived = "";
    /** Latest quality sample per metric ("jitter" or "theirs.jitter"): {value, warning}. For the quality indicator. */
    /** @type {Record<string, {value: number, warning: boolean}>} */
    this.quality = {};
    /** The user hung up before the server named the call: hang up when it does. */
    this.hangupPending = false;
    /** @type {CallMedia | null} */
    this.media = null;
    /** Placed over the rep's own phone (pass-through): no audio, Mute or Hold here. */
    this.passthrough = false;
    /** Whom the rep called, when picked in the people search: {id, name, account}. */
    /** @type {{id: number, name: string, account: string} | null} */
    this.person = null;
  }

  /** Whether the call is still in progress (for the Call button, the timer...). */
  get live() {
    return LIVE.has(this.state);
  }

  /** The caller or callee, in words. */
  get label() {
    return peerLabel(this.peer);
  }
}

/**
 * @typedef {object} CallsSnapshot
 * @property {Call[]} calls            every call not yet forgotten
 * @property {Call | null} current     the call the dialer shows (may be ended)
 * @property {Call | null} incoming    the call ringing here, for the incoming panel
 */

export class CallController {
  /**
   * @param {object} options
   * @param {import("./bus.js").Bus} options.bus
   * @param {import("./connection.js").Connection} options.connection
   * @param {HTMLAudioElement} options.audio
   * @param {() => number} [options.now]
   */
  constructor({ bus, connection, audio, now }) {
    this.bus = bus;
    this.connection = connection;
    this.audio = audio;
    this.now = now || (() => Date.now());
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    /** @type {Call[]} */
    this.calls = [];
    /** @type {Call | null} */
    this.current = null;
    /** Place calls over the rep's own phone, not the microphone (features/passthrough.js). */
    this.passthrough = false;

    const on = (type, handler) => bus.on(`message:${type}`, (m) => handler.call(this, m));
    on("hello", this.onHello);
    on("dialling", this.onDialling);
    on("incoming", this.onIncoming);
    on("ringing", this.onRinging);
    on("answered", this.onAnswered);
    on("ended", this.onEnded);
    on("dtmf", this.onDtmf);
    on("held", this.onHeld);
    on("muted", this.onMuted);
    on("quality", this.onQuality);
    on("error", this.onError);
  }

  // ----- what the views call -------------------------------------------

  /** Whether a call is in progress (the Call button is disabled then). */
  get busy() {
    return Boolean(this.current && this.current.live);
  }

  /**
   * Place a call: microphone, offer, "dial".
   * @param {string} to           E.164 number or internal extension, as the server normalized it
   * @param {string} extension    digits to send after answer ("" for none)
   * @returns {Promise<void>}
   */
  async dial(to, extension) {
    if (this.busy) return;
    if (!this.connection.connected) {
      this.alert("Not connected to the server. Wait for “Connected” and call again.");
      return;
    }
    this.alert("");
    const call = new Call({ direction: "outbound", state: "starting", peer: { number: to } });
    call.ref = this.connection.nextRef();
    // Pass-through: the server rings the rep's own phone; this page has no audio.
    const passthrough = this.passthrough;
    call.passthrough = passthrough;
    if (!passthrough) call.media = this.newMedia(call);
    this.calls.push(call);
    this.current = call;
    this.changed();

    /** @type {Record<string, unknown>} */
    const message = { type: "dial", ref: call.ref, to };
    if (passthrough) message.passthrough = true;
    else {
      try {
        message.sdp = await call.media.offer();
      } catch (err) {
        if (call.state === "ended") return; // hung up while starting
        this.forget(call);
        this.alert(mediaErrorText(err));
        return;
      }
    }
    if (call.state === "ended") return; // hung up while starting: nothing to send
    if (extension) message.extension = extension;
    // Features add their fields (people search: person_id) to the message and the call.
    this.bus.emit("dial", { message, call });
    if (!this.connection.send(message)) {
      this.forget(call);
      this.alert("Lost the connection to the server before the call started. Try again.");
      return;
    }
    this.move(call, "dialling");
  }

  /**
   * Answer a ringing incoming call (hanging up the current one, if any).
   * @param {Call} call
   * @returns {Promise<void>}
   */
  async answer(call) {
    if (call.state !== "incoming") return;
    if (this.current && this.current.live && this.current !== call) this.hangup();
    this.alert("");
    this.current = call;
    call.media = this.newMedia(call);
    this.move(call, "answering");
    let sdp;
    try {
      sdp = await call.media.offer();
    } catch (err) {
      call.media.close();
      call.media = null;
      if (call.state === "answering") {
        this.move(call, "incoming"); // still ringing: the user may fix the microphone or decline
        this.alert(mediaErrorText(err));
      }
      return;
    }
    if (call.state !== "answering") return; // the caller gave up meanwhile
    if (!this.connection.send({ type: "answer", call: call.id, sdp })) {
      call.media.close();
      call.media = null;
      this.move(call, "incoming");
      this.alert("Not connected to the server. The call could not be answered.");
    }
  }

  /**
   * Decline a ringing incoming call.
   * @param {Call} call
   */
  decline(call) {
    if (call.state !== "incoming" && call.state !== "answering") return;
    this.connection.send({ type: "decline", call: call.id });
    this.end(call, "Declined");
  }

  /** Hang up the current call (or cancel it before it is sent). */
  hangup() {
    const call = this.current;
    if (!call || !call.live) return;
    if (call.id) {
      this.connection.send({ type: "hangup", call: call.id });
    } else if (call.state !== "starting") {
      call.hangupPending = true; // "dial" went out: hang up when "dialling" names the call
    }
    this.end(call, endedText("hangup"));
  }

  /** Mute or unmute the current call. */
  toggleMute() {
    const call = this.current;
    if (!call || !call.live || call.passthrough) return;
    call.muted = !call.muted;
    this.applyMicrophone(call);
    if (call.id) this.connection.send({ type: "mute", call: call.id, muted: call.muted });
    this.changed();
  }

  /** Put the current call on hold, or take it off. */
  toggleHold() {
    const call = this.current;
    if (!call || call.state !== "connected" || !call.id || call.passthrough) return;
    if (!this.connection.send({ type: "hold", call: call.id, held: !call.held })) {
      this.alert("Not connected to the server: hold was not changed.");
      return;
    }
    call.held = !call.held; // shown at once; the server's "held" confirms or corrects
    this.applyMicrophone(call);
    this.changed();
  }

  /**
   * Send keypad digits on the current connected call (DTMF via the server).
   * @param {string} digits
   * @returns {boolean} whether they went
   */
  sendDigits(digits) {
    const call = this.current;
    if (!call || call.state !== "connected" || !call.id) return false;
    return this.connection.send({ type: "dtmf", call: call.id, digits });
  }

  /** Forget every call locally (sign out): media closed, nothing sent. */
  reset() {
    for (const call of this.calls) if (call.media) call.media.close();
    this.calls = [];
    this.current = null;
    this.changed();
  }

  /** @returns {CallsSnapshot} */
  snapshot() {
    const incoming = this.calls.find((c) => c.state === "incoming") || null;
    return { calls: [...this.calls], current: this.current, incoming };
  }

  // ----- server messages -----------------------------------------------

  /**
   * The server's greeting, on every (re)connect: ICE servers, and the calls it
   * still has for this page. Local calls it does not list are over.
   * @param {any} message
   */
  onHello(message) {
    this.iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : [];
    const listed = Array.isArray(message.calls) ? message.calls : [];
    const byId = new Map(listed.map((c) => [String(c.call), c]));
    for (const call of [...this.calls]) {
      if (!call.live && call.state !== "incoming") continue;
      if (call.state === "starting") continue; // nothing sent yet: it will be
      const entry = call.id ? byId.get(call.id) : undefined;
      if (!entry) {
        this.end(call, endedText("connection_lost"));
        continue;
      }
      this.restore(call, entry);
      byId.delete(call.id);
    }
    for (const entry of byId.values()) {
      const call = new Call({
        id: String(entry.call),
        direction: isInbound(entry.direction) ? "inbound" : "outbound",
        state: "dialling",
        peer: entry.peer,
      });
      this.calls.push(call);
      this.restore(call, entry);
      if (call.state !== "incoming" && (!this.current || !this.current.live)) this.current = call;
    }
    // Hangups that waited for a "dialling" that the lost socket never brought: over.
    for (const call of this.calls) call.hangupPending = false;
    this.calls = this.calls.filter((c) => c.state !== "ended" || c === this.current);
    this.changed();
  }

  /** @param {any} message */
  onDialling(message) {
    const call = this.calls.find((c) => c.ref && c.ref === message.ref);
    if (!call) return;
    call.id = String(message.call);
    if (call.hangupPending) {
      this.connection.send({ type: "hangup", call: call.id });
      call.hangupPending = false;
      this.calls = this.calls.filter((c) => c === this.current || c.state !== "ended");
      return;
    }
    this.acceptAnswer(call, message.sdp);
    this.changed();
  }

  /** @param {any} message */
  onIncoming(message) {
    if (this.byId(message.call)) return;
    const call = new Call({ id: String(message.call), direction: "inbound", state: "incoming", peer: message.from });
    this.calls.push(call);
    this.changed();
  }

  /** @param {any} message */
  onRinging(message) {
    const call = this.byId(message.call);
    if (call && call.state === "dialling") this.move(call, "ringing");
  }

  /** @param {any} message */
  onAnswered(message) {
    const call = this.byId(message.call);
    if (!call || !call.live) return;
    if (message.sdp) this.acceptAnswer(call, message.sdp);
    if (message.peer) call.peer = message.peer;
    call.answeredAt = this.now();
    this.move(call, "connected");
  }

  /** @param {any} message */
  onEnded(message) {
    const call = this.byId(message.call);
    if (!call || call.state === "ended") return;
    const wasRingingHere = call.state === "incoming";
    let text = endedText(message.cause, message.status, message.reason);
    if (wasRingingHere) text = `Missed call from ${call.label}`;
    this.end(call, text);
  }

  /** @param {any} message */
  onDtmf(message) {
    const call = this.byId(message.call);
    if (!call) return;
    call.digitsReceived = (call.digitsReceived + String(message.digit)).slice(-20);
    this.changed();
  }

  /** @param {any} message */
  onHeld(message) {
    const call = this.byId(message.call);
    if (!call) return;
    // "by": "you" (this page's Hold) or "peer" (the far end put us on hold).
    if (message.by === "peer") call.heldByPeer = Boolean(message.held);
    else call.held = Boolean(message.held);
    this.applyMicrophone(call);
    this.changed();
  }

  /** @param {any} message */
  onMuted(message) {
    const call = this.byId(message.call);
    if (!call) return;
    call.muted = Boolean(message.muted);
    this.applyMicrophone(call);
    this.changed();
  }

  /** @param {any} message */
  onQuality(message) {
    const call = this.byId(message.call);
    if (!call) return;
    // Keyed "metric" or "leg.metric" when the server says whose leg ("yours"/"theirs").
    const key = message.leg ? `${message.leg}.${message.metric}` : String(message.metric);
    call.quality[key] = { value: Number(message.value), warning: Boolean(message.warning) };
    this.changed();
  }

  /** @param {any} message */
  onError(message) {
    const text = typeof message.message === "string" ? message.message : "The server reported an error.";
    const call =
      (message.ref && this.calls.find((c) => c.ref === message.ref)) || (message.call && this.byId(message.call));
    // A refused dial ends the call it was for; other errors are only shown.
    if (call && message.ref && call.live && !call.id) {
      this.end(call, "Call failed");
    }
    if (message.ref && !call) return; // an old normalize ref etc.: the dialer handles its own
    this.alert(text);
  }

  // ----- helpers -------------------------------------------------------

  /**
   * @private
   * @param {Call} call
   * @returns {CallMedia}
   */
  newMedia(call) {
    const media = new CallMedia({ iceServers: this.iceServers, audio: this.audio });
    media.onConnectionState = (state) => {
      if (state === "failed" && call.live) this.alert("The call's audio connection failed.");
    };
    return media;
  }

  /**
   * @private
   * @param {Call} call
   * @param {string | undefined} sdp
   */
  acceptAnswer(call, sdp) {
    if (!sdp || !call.media) return;
    call.media.accept(sdp).catch((err) => {
      this.alert(`The call's audio could not be connected (${err instanceof Error ? err.message : err}).`);
    });
  }

  /**
   * Take state from a hello calls entry.
   * @private
   * @param {Call} call
   * @param {any} entry  {call, state, peer, direction, held?, muted?, duration?}
   */
  restore(call, entry) {
    if (entry.peer) call.peer = entry.peer;
    const state = String(entry.state);
    if (state === "answered" || state === "connected" || state === "held") {
      if (call.state !== "connected") {
        const seconds = Number(entry.duration);
        call.answeredAt = this.now() - (Number.isFinite(seconds) ? seconds * 1000 : 0);
      }
      call.state = "connected";
    } else if (state === "incoming" || (call.direction === "inbound" && state === "ringing")) {
      if (call.state !== "answering") call.state = "incoming";
    } else if (state === "ringing") {
      call.state = "ringing";
    } else if (call.state === "starting") {
      call.state = "dialling";
    }
    if ("held" in entry) call.held = Boolean(entry.held);
    else if (state === "held") call.held = true;
    if ("muted" in entry) call.muted = Boolean(entry.muted);
    this.applyMicrophone(call);
  }

  /**
   * @private
   * @param {Call} call
   * @param {CallState} state
   */
  move(call, state) {
    if (!TRANSITIONS[call.state].includes(state)) return;
    call.state = state;
    this.changed();
  }

  /**
   * @private
   * @param {Call} call
   * @param {string} text
   */
  end(call, text) {
    if (call.state === "ended") return;
    call.state = "ended";
    call.endedText = text;
    call.endedAt = this.now();
    if (call.media) call.media.close();
    call.media = null;
    // The dialer shows how a call ended until the next one, unless another is up.
    if (!this.current || !this.current.live) this.current = call;
    // Keep only what the page still shows (and a call whose hangup awaits its id).
    this.calls = this.calls.filter((c) => c.state !== "ended" || c === this.current || c.hangupPending);
    this.changed();
  }

  /**
   * Drop a call that never was (the microphone failed before anything was sent).
   * @private
   * @param {Call} call
   */
  forget(call) {
    if (call.media) call.media.close();
    call.media = null;
    if (call.state !== "ended") call.state = "ended";
    this.calls = this.calls.filter((c) => c !== call);
    if (this.current === call) this.current = null;
    this.changed();
  }

  /**
   * @private
   * @param {Call} call
   */
  applyMicrophone(call) {
    if (call.media) call.media.setMicrophoneEnabled(!call.muted && !call.held);
  }

  /**
   * @private
   * @param {unknown} id
   * @returns {Call | undefined}
   */
  byId(id) {
    if (id === undefined || id === null) return undefined;
    const key = String(id);
    return this.calls.find((c) => c.id === key);
  }

  /**
   * @private
   * @param {string} text
   */
  alert(text) {
    this.bus.emit("alert", { text });
  }

  /** @private */
  changed() {
    this.bus.emit("calls", this.snapshot());
  }
}

/**
 * Whether a hello entry's direction means the call rang this page. The server
 * may say "inbound"/"outbound" or, from the page's side, "incoming"/"outgoing".
 * @param {unknown} direction
 * @returns {boolean}
 */
function isInbound(direction) {
  return direction === "inbound" || direction === "incoming";
}

/**
 * @param {unknown} err
 * @returns {string}
 */
function mediaErrorText(err) {
  if (err instanceof MediaError) return err.message;
  return `The call could not be started (${err instanceof Error ? err.message : err}).`;
}
