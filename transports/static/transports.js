// @ts-check
/**
 * The transport registry: the client's only list of transport names, each mapped to its class.
 * The order is the default preference (best first). Everything else reads a transport's static
 * members (transport-base.js, `TransportClass`) and never compares names.
 */

import { LongPollTransport } from "./transport-longpoll.js";
import { SSETransport } from "./transport-sse.js";
import { WebSocketTransport } from "./transport-websocket.js";

/** @typedef {import("./transport-base.js").TransportClass} TransportClass */

/** Transport classes by name, best first. */
export const TRANSPORTS = Object.freeze({
  websocket: WebSocketTransport,
  sse: SSETransport,
  longpoll: LongPollTransport,
});

/** @typedef {keyof typeof TRANSPORTS} TransportName */

/** Every registered name, best first (the default `transports` option). */
export const TRANSPORT_NAMES = /** @type {readonly TransportName[]} */ (Object.freeze(Object.keys(TRANSPORTS)));

/** @param {unknown} name @returns {name is TransportName} */
export const isTransportName = (name) => TRANSPORT_NAMES.includes(/** @type {any} */ (name));

/** @param {TransportName} name @returns {TransportClass} */
export const transportClass = (name) => TRANSPORTS[name];
