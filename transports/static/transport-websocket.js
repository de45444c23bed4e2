// @ts-check
/** WebSocket transport (§4): one frame per message, binary frames as binary messages. */

import { FRAME } from "./codec.js";
import { BaseTransport, READY } from "./transport-base.js";

/** @typedef {import("./codec.js").Frame} Frame */
/** @typedef {import("./transport-base.js").CloseInfo} CloseInfo */
/** @typedef {import("./transport-base.js").TransportOptions} TransportOptions */

/** WebSocket transport (§4): one frame per message, binary frames as binary messages. */
export class WebSocketTransport extends BaseTransport {
  /** Frames go up on the socket: no POST /send. */
  static bidirectional = true;
  /** A proxy may accept the upgrade and then stall: a PING/PONG round trip proves it (§4). */
  static provenBy = FRAME.PONG;
  static awaiting = "round trip";

  /** @param {Record<string, any>} options @param {any} globals */
  static environment(options, globals) {
    const WebSocket = options.WebSocket || globals.WebSocket;
    return WebSocket ? { WebSocket } : null;
  }

  /**
   * @param {URL} url the negotiated `urls.websocket` @param {any} neg
   * @param {(path: string) => URL} resolve @param {TransportOptions} options
   */
  static start(url, neg, resolve, options) {
    url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
    url.searchParams.set("ticket", neg.ticket);
    return new WebSocketTransport(url.href, /** @type {any} */ (options));
  }

  /**
   * @param {string} url ws:// or wss:// URL including `?ticket=`
   * @param {{WebSocket: any, maxMessage: number}} options
   */
  constructor(url, options) {
    super(options.maxMessage);
    this.binary = true;
    const ws = (this.ws = new options.WebSocket(url));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.opened();
    ws.onmessage = (/** @type {{data: any}} */ event) => this.receive(event.data, () => ws.send("[8]"));
    ws.onerror = () => this.onerror(new Error("websocket error"));
    ws.onclose = (/** @type {CloseInfo} */ event) => this.end(event.code || 1006, event.reason || "");
  }

  /** @param {Frame} frame */
  send(frame) { this.ws.send(this.encode(frame)); }

  leave() {
    if (this.readyState !== READY.CLOSED && this.ws.readyState === 1) {
      try { this.ws.send(`[${FRAME.CLOSE},1000,"closed by the client"]`); } catch (_) { /* closing */ }
    }
  }

  close() {
    if (!this.detach()) return false;
    const ws = this.ws;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try { ws.close(1000, ""); } catch (_) { /* already closing */ }
    return true;
  }
}
