// @ts-check
/**
 * Browser client of `transports`, wire protocol v1 (docs/protocol.md is the contract; these
 * modules rely on nothing else). ES modules, no build step, no dependencies: this file is the
 * entry and the public URL; the modules it imports are served beside it.
 *
 *     <script type="module">
 *       import { connect } from "/realtime/client.js";
 *       const rt = connect("/realtime");
 *       const off = rt.subscribe("news", (pub) => console.log(pub.event, pub.data));
 *       const answer = await rt.send("chat.send", { text: "hi" });
 *     </script>
 *
 * Loading the module also sets `globalThis.Transports = { connect }`, so code that is not a module
 * can use `Transports.connect(...)` once the module has run (module scripts are deferred: call it
 * from a `load`/`DOMContentLoaded` handler, not from an inline classic script above it).
 *
 * Modules: codec.js (frames, §2), policy.js (retries, close codes, backoff, defaults: all read
 * from policy.json, the policy the Python client reads too), timer.js
 * (clock, deadlines), transport-base.js / transport-http.js and one module per transport
 * (transport-websocket.js, transport-sse.js, transport-longpoll.js: each looks like a
 * WebSocket), transports.js (the registry: the only list of transport names), options.js,
 * negotiate.js, conn.js, and the Client (client-core.js) with its helpers subscriptions.js,
 * presence.js, requests.js, failback.js, events.js, page.js, stats.js. Tab sharing: share.js
 * (each tab's client, the election) and share-leader.js (the leader's connection for all).
 */

import { Client } from "./client-core.js";
import { PROTOCOL_VERSION } from "./codec.js";
import { SharedClient, shareSupport } from "./share.js";

export { Client } from "./client-core.js";
export { FRAME, PROTOCOL_VERSION, decodeFrame, encodeFrame, fromBase64, toBase64 } from "./codec.js";
export { DEFAULTS, orderTransports } from "./options.js";
export { backoffDelay, classifyClose, livenessRemaining, reconnectDelay } from "./policy.js";
export { startDeadline } from "./timer.js";
export { READY } from "./transport-base.js";
export { LongPollTransport } from "./transport-longpoll.js";
export { SSETransport } from "./transport-sse.js";
export { WebSocketTransport } from "./transport-websocket.js";

/** @typedef {import("./options.js").Options} Options */

/**
 * Connect to a `transports` server and keep the connection alive: negotiate, pick the best
 * transport that works through the network (WebSocket, then SSE, then long-poll by default),
 * reconnect with backoff, resume topics without loss or duplicates, and move back to a better
 * transport when it works again.
 * @param {string} url the extension's URL prefix, e.g. "/realtime" or "https://host/realtime"
 * @param {Options} [options]
 * @returns {Client} (a SharedClient, with the same members, when the tab shares a connection)
 */
export function connect(url, options = {}) {
  // Tab sharing (share.js): where the browser can, the tabs of a group share one connection and
  // this tab gets a SharedClient, with the same API; `new Client()` always connects on its own.
  const support = shareSupport(options);
  if (support) return /** @type {Client} */ (/** @type {unknown} */ (new SharedClient(url, options, support)));
  return new Client(url, options);
}

if (typeof globalThis === "object" && !(/** @type {any} */ (globalThis).Transports)) {
  /** @type {any} */ (globalThis).Transports = Object.freeze({ connect, version: PROTOCOL_VERSION });
}
