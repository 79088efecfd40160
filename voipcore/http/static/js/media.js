/**
 * WebRTC for one call: the microphone, the RTCPeerConnection, the offer.
 *
 * The page is always the offerer, for calls it dials and for calls it answers,
 * and it sends its whole offer once ICE gathering is done (no trickle ICE):
 * the server answers with one SDP and media starts. Audio only, one bundle,
 * RTCP multiplexed.
 *
 * @module media
 */

/** Longest wait for ICE gathering before the offer goes with what it has. */
export const GATHER_CAP_MS = 2000;

/** A failure the user can act on, with the text to show them. */
export class MediaError extends Error {
  /**
   * @param {string} message   shown to the user as is
   * @param {unknown} [cause]
   */
  constructor(message, cause) {
    super(message);
    this.name = "MediaError";
    this.cause = cause;
  }
}

/**
 * Words for a getUserMedia failure.
 * @param {unknown} err
 * @returns {string}
 */
export function microphoneErrorText(err) {
  const name = err && typeof err === "object" && "name" in err ? String(err.name) : "";
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access is blocked. Allow the microphone for this site in your browser, then call again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone found. Connect a headset or microphone, then call again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone is in use by another application or could not be started.";
    default:
      return "The microphone could not be started.";
  }
}

/**
 * The media side of one call. Create it, `offer()`, send the SDP, then
 * `accept(answerSdp)` when the server answers; `close()` at the end.
 */
export class CallMedia {
  /**
   * @param {object} options
   * @param {RTCIceServer[]} options.iceServers  from the server's hello
   * @param {HTMLAudioElement} options.audio     where the far end is heard
   */
  constructor({ iceServers, audio }) {
    this.iceServers = iceServers;
    this.audio = audio;
    /** @type {MediaStream | null} */
    this.microphone = null;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    this.closed = false;
    this.playing = false;
    /** @type {(state: string) => void} */
    this.onConnectionState = () => {};
  }

  /**
   * Open the microphone and make the offer.
   * @returns {Promise<string>} the offer SDP, with all gathered candidates
   * @throws {MediaError} when the microphone is denied or missing, or WebRTC fails
   */
  async offer() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new MediaError("This browser cannot use a microphone here (a secure https page is needed).");
    }
    try {
      this.microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      throw new MediaError(microphoneErrorText(err), err);
    }
    if (this.closed) {
      this.stopMicrophone();
      throw new MediaError("The call was cancelled.");
    }
    try {
      const pc = new RTCPeerConnection({
        iceServers: this.iceServers,
        bundlePolicy: "max-bundle",
        rtcpMuxPolicy: "require",
      });
      this.pc = pc;
      pc.ontrack = (event) => this.play(event);
      pc.onconnectionstatechange = () => this.onConnectionState(pc.connectionState);
      for (const track of this.microphone.getAudioTracks()) {
        pc.addTrack(track, this.microphone);
      }
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await gatheringDone(pc, GATHER_CAP_MS);
      const sdp = pc.localDescription ? pc.localDescription.sdp : offer.sdp;
      if (!sdp) throw new Error("empty offer");
      return sdp;
    } catch (err) {
      if (err instanceof MediaError) throw err;
      throw new MediaError(`The call's audio could not be set up (${err instanceof Error ? err.message : err}).`, err);
    }
  }

  /**
   * Apply the server's SDP answer.
   * @param {string} sdp
   * @returns {Promise<void>}
   */
  async accept(sdp) {
    if (!this.pc || this.closed) return;
    if (this.pc.signalingState !== "have-local-offer") return; // answered already
    await this.pc.setRemoteDescription({ type: "answer", sdp });
  }

  /**
   * Send or stop sending the microphone (mute, hold).
   * @param {boolean} enabled
   */
  setMicrophoneEnabled(enabled) {
    if (!this.microphone) return;
    for (const track of this.microphone.getAudioTracks()) track.enabled = enabled;
  }

  /** End the call's media: microphone off, peer connection closed, audio cleared. */
  close() {
    this.closed = true;
    this.stopMicrophone();
    if (this.pc) {
      this.pc.ontrack = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
      this.pc = null;
    }
    if (this.audio.srcObject && this.playing) {
      this.audio.srcObject = null;
    }
    this.playing = false;
  }

  /** @private */
  stopMicrophone() {
    if (!this.microphone) return;
    for (const track of this.microphone.getTracks()) track.stop();
    this.microphone = null;
  }

  /**
   * The far end's audio into the page's one audio element.
   * @private
   * @param {RTCTrackEvent} event
   */
  play(event) {
    const stream = event.streams && event.streams[0] ? event.streams[0] : new MediaStream([event.track]);
    this.audio.srcObject = stream;
    this.playing = true;
    // Autoplay is allowed: every call starts from a click (Call or Answer).
    const started = this.audio.play();
    if (started && typeof started.catch === "function") started.catch(() => {});
  }
}

/**
 * Resolve when ICE gathering is complete, or after `capMs`, whichever is first.
 * @param {RTCPeerConnection} pc
 * @param {number} capMs
 * @returns {Promise<void>}
 */
export function gatheringDone(pc, capMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      pc.removeEventListener("icecandidate", onCandidate);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") finish();
    };
    /** @param {RTCPeerConnectionIceEvent} event */
    const onCandidate = (event) => {
      if (!event.candidate) finish(); // the null candidate: gathering is over
    };
    const timer = setTimeout(finish, capMs);
    pc.addEventListener("icegatheringstatechange", check);
    pc.addEventListener("icecandidate", onCandidate);
  });
}
