// @ts-check
/**
 * What every transport shares. A transport looks like a WebSocket (readyState,
 * onopen/onmessage/onerror/onclose, send, close), but onmessage gets decoded frames, send takes
 * frames, and onclose gets {code, reason}. A transport answers PING itself and turns a CLOSE frame
 * into onclose. After close() it calls nothing any more.
 *
 * The class itself describes the transport to the client (static members, see
 * {@link TransportClass}), so that the client reads properties where transports differ and never
 * names one. transports.js maps names to classes.
 */

import { FRAME, byteLength, codeError, decodeFrame, encodeFrame } from "./codec.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./timer.js").Clock} Clock */

/** readyState values shared by the transports (the WebSocket ones). */
export const READY = Object.freeze({ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });

/**
 * How a transport ended; `retryAfter`: ms of a Retry-After that came with the failure (0: none).
 * @typedef {{code: number, reason: string, retryAfter?: number}} CloseInfo
 */

/**
 * @typedef {(url: string, init?: any) => Promise<{status: number, ok?: boolean,
 *   headers?: {get(name: string): string | null}, json(): Promise<any>}>} Fetch
 */

/**
 * What the client gives every transport it starts, plus what the transport's `environment`
 * returned (its constructors: `WebSocket`, `EventSource`). `hint` is the negotiate answer's
 * `retry` (ms, 0 when none), which sets how long an open transport keeps trying its own session
 * after a network failure (the policy's `reattach`); `random` draws the jitter of its retries.
 * @typedef {{fetch: Fetch, clock: Clock, random: () => number, maxMessage: number, batch: number,
 *   body: number, hint: number} & Record<string, any>} TransportOptions
 */

/**
 * The static surface of a transport class: everything the client knows about a transport.
 * @typedef {Object} TransportClass
 * @property {boolean} bidirectional frames go up on the transport itself, so the negotiate
 *   response needs no `send` URL for it
 * @property {number} provenBy the frame type that proves a new transport works: HELLO, or PONG,
 *   in which case the client sends a PING as soon as the transport opens (§4)
 * @property {string} awaiting what the open deadline waits for ("no <awaiting> within N ms")
 * @property {boolean} polling the server holds each request up to the poll window, so silence
 *   is judged against max(heartbeat, pollWindow) (§6.1, §9)
 * @property {(options: Record<string, any>, globals: any) => Record<string, any> | null} environment
 *   what the transport needs from connect() options or the page (constructors), or null when it
 *   cannot run here
 * @property {(url: URL, neg: any, resolve: (path: string) => URL, options: TransportOptions) => BaseTransport} start
 *   open it on a negotiated session: `url` is its own URL from the negotiate response, `resolve`
 *   resolves another one (`urls.send`) against the negotiate URL
 */

/** Shared surface of the transports. */
export class BaseTransport {
  /** @type {boolean} */
  static bidirectional = false;
  /** @type {number} */
  static provenBy = FRAME.HELLO;
  /** @type {string} */
  static awaiting = "first event";
  /** @type {boolean} */
  static polling = false;

  /**
   * @param {Record<string, any>} options @param {any} globals
   * @returns {Record<string, any> | null}
   */
  static environment(options, globals) { return {}; }

  /** @param {number} maxMessage largest frame the server accepts (limits.message) */
  constructor(maxMessage) {
    /** @type {number} */
    this.readyState = READY.CONNECTING;
    this.maxMessage = maxMessage;
    this.binary = false;
    /** @type {() => void} */
    this.onopen = () => {};
    /**
     * A frame from the server; `uplink`: it came in the answer to a POST /send (§6.2).
     * @type {(frame: Frame, uplink?: boolean) => void}
     */
    this.onmessage = () => {};
    /** @type {(error: Error) => void} */
    this.onerror = () => {};
    /** @type {(info: CloseInfo) => void} */
    this.onclose = () => {};
    /** Called on every poll response, frames or none: the server was heard from (§6.1, §9). */
    this.onalive = () => {};
    /**
     * The server refused this encoded frame on its own as too large (413 on a POST of it alone):
     * it is dropped, and its send fails with "payload_too_large".
     * @type {(text: string) => void}
     */
    this.onrefuse = () => {};
  }

  /** Send one frame. @param {Frame} frame */
  send(frame) { throw new TypeError(`cannot send ${frame[0]}: not a concrete transport`); }

  /** Encode a frame, refusing one larger than limits.message. @param {Frame} frame */
  encode(frame) {
    const encoded = encodeFrame(frame, this.binary);
    if (byteLength(encoded) > this.maxMessage) {
      throw codeError("payload_too_large", `frame exceeds ${this.maxMessage} bytes`);
    }
    return encoded;
  }

  opened() {
    if (this.readyState !== READY.CONNECTING) return;
    this.readyState = READY.OPEN;
    this.onopen();
  }

  /**
   * Handle one incoming frame: answer PING, turn CLOSE into onclose, pass the rest on.
   * `uplink`: the frame came in the answer to POST /send (§6.2), not down the stream or poll.
   * Only REPLY frames come that way (anything else there is ignored), and they are passed on
   * with `uplink` set: they prove the server answers POSTs, not that the downstream still
   * works, so they do not count for liveness (§9).
   * @param {any} raw @param {() => void} pong sends the PONG @param {boolean} [uplink]
   */
  receive(raw, pong, uplink = false) {
    let frame;
    try {
      frame = decodeFrame(raw);
    } catch (error) {
      return this.onerror(/** @type {Error} */ (error));
    }
    if (uplink) {
      if (frame[0] === FRAME.REPLY) this.onmessage(frame, true);
      return;
    }
    if (frame[0] === FRAME.CLOSE) return this.end(Number(frame[1]) || 1006, String(frame[2] ?? ""));
    if (frame[0] === FRAME.PING) pong();
    this.onmessage(frame);
  }

  /** Mark closed and detach every callback. @returns {boolean} false if already closed */
  detach() {
    if (this.readyState === READY.CLOSED) return false;
    this.readyState = READY.CLOSED;
    this.onopen = this.onmessage = this.onerror = this.onclose = this.onalive = this.onrefuse = () => {};
    return true;
  }

  /**
   * Close and report it once.
   * @param {number} code @param {string} reason @param {number} [retryAfter] ms, 0 when none
   */
  end(code, reason, retryAfter = 0) {
    const onclose = this.onclose;
    if (this.close()) onclose({ code, reason, retryAfter });
  }

  /** @returns {boolean} */
  close() { return this.detach(); }

  /** Tell the server the client leaves for good (a CLOSE frame, §2), best effort. */
  leave() {}
}
