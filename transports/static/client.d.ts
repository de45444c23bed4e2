/**
 * Type declarations of the `transports` browser client (client.js, wire protocol v1), served
 * beside it as `<prefix>/client.d.ts` and shipped in the Python package.
 *
 *     import { connect } from "/realtime/client.js";
 *     const rt = connect("/realtime");
 *     const off = rt.subscribe("news", (pub) => console.log(pub.event, pub.data));
 *     const answer = await rt.send("chat.send", { text: "hi" });
 *
 * The reference is docs/browser-client.md. tests/ts checks these declarations against the
 * JavaScript (the declarations its JSDoc implies) and against a typed usage example, so they
 * cannot drift from the code.
 */

// --- connect() and its options --------------------------------------------------------------

/** A transport's name, best first in the default order. */
export type TransportName = "websocket" | "sse" | "longpoll";

/** The client's connection state. */
export type State = "connecting" | "open" | "reconnecting" | "closed";

/** Injectable time source (tests pass a fake one). */
export interface Clock {
  setTimeout: (fn: () => void, ms: number) => any;
  clearTimeout: (id: any) => void;
  /** milliseconds, like Date.now() */
  now: () => number;
}

/** The part of `fetch` the client uses; the global `fetch` fits it. */
export type Fetch = (
  url: string,
  init?: any,
) => Promise<{
  status: number;
  ok?: boolean;
  headers?: { get(name: string): string | null };
  json(): Promise<any>;
}>;

/** Options of {@link connect}. Every field is optional; defaults are in {@link DEFAULTS}. */
export interface Options {
  /** Transports to use, best first (default `["websocket", "sse", "longpoll"]`). Unknown names,
   * repeats and transports this environment cannot run are dropped; none left throws. */
  transports?: TransportName[];
  /** ms a new transport gets to prove itself, by name: WebSocket open + PING/PONG round trip
   * (2500), SSE first event (2500), long-poll first poll response (10000). */
  deadlines?: Partial<Record<TransportName, number>>;
  /** Reconnect backoff in ms: full jitter between 0 and min(max, min * 2^attempt)
   * (500, 20000). */
  backoff?: { min?: number; max?: number };
  /** Background re-probe of a better transport while on a worse one: first after about `min`
   * ms, doubling up to `max` (30000, 600000); `false` disables it. */
  failback?: { min?: number; max?: number } | false;
  /** Bearer token sent with every negotiate as `Authorization: Bearer <token>`; a function is
   * called again before every negotiate (a refresh). When the server ends the session for its
   * credentials (close 4501, e.g. the app's `revalidate` hook refused an expired token), a
   * function is asked for a fresh token and the client resumes every topic on a new session,
   * nothing lost or doubled (`stats.reauthentications`); if it gives none (null, undefined, "",
   * or it throws) or the server refuses it, the client closes with 4501 "credentials refused"
   * and an "error" event of type "reauth". A string cannot be renewed: the client closes. */
  token?: string | (() => string | null | undefined | Promise<string | null | undefined>);
  /** A transport whose connections die (1005, 1006, no data) within `upForLessThanMs` of
   * opening `times` times in a row is demoted to the next one and remembered so; the background
   * probe brings it back once it stayed up `stayUpMs` (10000, 3, 30000); `false` disables it. */
  flapping?: { upForLessThanMs?: number; times?: number; stayUpMs?: number } | false;
  /** ms send()/publish() wait for their REPLY once sent (10000). */
  sendTimeout?: number;
  /** Sends kept while not connected; more reject with code "queue_full" (1000). */
  maxQueue?: number;
  /** Where the transport that worked is remembered, per origin and prefix, shared by the tabs
   * (localStorage, else sessionStorage; null disables it). Forgotten when the network changes
   * (online, offline, a navigator.connection change). */
  storage?: Storage | null;
  /** How long that memory is trusted, in ms (86400000: 24 hours). */
  rememberMs?: number;
  /** Share one connection between the tabs of this origin that connect to the same URL, with
   * the same transports and credentials (default true). Where the browser lacks Web Locks,
   * BroadcastChannel or crypto.subtle, the client connects on its own. */
  share?: boolean;
  /** Close the client (a goodbye to the server) when the page goes away for good: `pagehide` not
   * into the back-forward cache. Default true. */
  closeOnPageHide?: boolean;
  /** Names the credentials for tab sharing: tabs share only with tabs of the same key. Default:
   * the `token` string; with a `token` function, tabs share only when this is set. */
  shareKey?: string;
  /** BroadcastChannel constructor to use instead of the global one (tests). */
  BroadcastChannel?: any;
  /** LockManager to use instead of `navigator.locks` (tests). */
  locks?: any;
  /** With no transport remembered, open on `transport` (long-poll, which passes every proxy)
   * and probe the better ones in the background `probeAfterMs` after it opened (0), switching
   * to the best that works without loss; a remembered transport other than `transport` gets
   * `rememberedDeadlineMs` (1000) on the page's first connection before `transport` is tried.
   * `false`: the transports in order, the remembered one first, each with its full deadline.
   * No fast start with `failback: false`. */
  fastStart?: { transport?: TransportName; probeAfterMs?: number; rememberedDeadlineMs?: number } | false;
  /** WebSocket constructor to use instead of the global one (tests). */
  WebSocket?: any;
  /** EventSource constructor to use instead of the global one (tests). */
  EventSource?: any;
  /** Function to use instead of the global fetch (tests). */
  fetch?: Fetch;
  /** Time source (tests). */
  clock?: Clock;
  /** Random source in [0, 1) (tests). */
  random?: () => number;
  /** Target of the online/pageshow listeners (default: globalThis; tests). */
  window?: any;
  /** Target of the visibilitychange listener (default: document; tests). */
  document?: any;
  /** Online status source, and `connection`, whose `change` events mean the network changed
   * (default: navigator; tests). */
  navigator?: { onLine?: boolean; connection?: any };
}

/** Defaults of the {@link Options}: the registry's transports, then the policy's values. */
export declare const DEFAULTS: Readonly<{
  transports: readonly TransportName[];
  deadlines: Readonly<Record<string, number>>;
  backoff: Readonly<{ min: number; max: number }>;
  failback: Readonly<{ min: number; max: number }>;
  sendTimeout: number;
  flapping: Readonly<{ upForLessThanMs: number; times: number; stayUpMs: number }>;
  maxQueue: number;
  rememberMs: number;
  fastStart: Readonly<{ transport: string; probeAfterMs: number; rememberedDeadlineMs: number }>;
}>;

/**
 * Connect to a `transports` server and keep the connection alive: negotiate, pick the best
 * transport that works through the network (WebSocket, then SSE, then long-poll by default),
 * reconnect with backoff, resume topics without loss or duplicates, and move back to a better
 * transport when it works again. Returns at once; the client connects in the background.
 * By default the tabs of the origin that connect to the same URL with the same transports and
 * credentials share one connection (`share`, `shareKey`); each tab still gets a whole Client.
 * @param url the extension's URL prefix, e.g. "/realtime" or "https://host/realtime"
 * @throws TypeError when there is no fetch, or no usable transport
 */
export declare function connect(url: string, options?: Options): Client;

// --- the client ------------------------------------------------------------------------------

/** A publication on a subscribed topic, delivered once, in order, across reconnects. */
export interface Publication {
  /** the message id the server gave it: "epoch:topic:offset" */
  id: string;
  topic: string;
  event: string;
  /** JSON value, or a Uint8Array for binary data */
  data: any;
  /** its position in the topic's history */
  offset: number;
  /** the history it belongs to: a new epoch means offsets started again */
  epoch: string;
}

/** What `Subscription.ready` resolves with: the server's answer to the first SUB. */
export interface SubscribeResult {
  /** false on a first subscribe; see the "recovered" event for resumes */
  recovered: boolean;
  epoch: string;
  offset: number;
}

/** The third argument of {@link Client.subscribe}. */
export interface SubscribeOptions {
  /** also follow who is subscribed to the topic (protocol §12): {@link Client.members}, the
   * "presence", "join" and "leave" events; the server must enable presence for the topic */
  presence?: boolean;
}

/** A member of a topic: one client subscribed to it (it keeps its id across reconnects). */
export interface Member {
  /** the client's public connection id */
  id: string;
  /** what the application shows of it (by default the identity its on_connect returned) */
  info: any;
}

/** Who is subscribed to a topic: what {@link Client.presence} resolves with. */
export interface PresenceListing {
  /** at most the server's `presence_max_members`, in no particular order */
  members: Member[];
  /** exact */
  count: number;
  /** true when `members` lists fewer than `count` */
  truncated: boolean;
}

/** Payload of the "presence" event: a presence snapshot was applied (the first one of a
 * subscription, and the one after each resubscribe, whose differences come first as "join" and
 * "leave"). */
export interface PresenceSync extends PresenceListing {
  topic: string;
  /** false: the server sends no joins or leaves for this topic (a large one) */
  events: boolean;
}

/** What {@link Client.subscribe} returns: call it to unsubscribe (this handler). */
export type Subscription = (() => void) & {
  /** settles with the first SUB reply; rejects with a {@link TransportsError} */
  ready: Promise<SubscribeResult>;
};

/** How a connection ended. */
export interface CloseInfo {
  code: number;
  reason: string;
  /** ms of a Retry-After that came with the failure (0 or absent: none) */
  retryAfter?: number;
}

/** Counters for debugging, demos and tests ({@link Client.stats}). */
export interface Stats {
  /** connection cycles started (each negotiates at least once) */
  attempts: number;
  /** successful reconnects after a lost connection */
  reconnects: number;
  /** reconnects with a fresh token after the server ended the session for its credentials
   * (4501) */
  reauthentications: number;
  /** transports demoted for flapping */
  demotions: number;
  /** transports given up while connecting, last 20 (`to`: the next one tried, null if none) */
  fallbacks: { from: string; to: string | null; reason: string; at: number }[];
  /** failback switches to a better transport, last 20 */
  switches: { from: string; to: string; at: number }[];
  /** background probes of a better transport */
  probes: number;
  /** outcome of the last probe, e.g. "websocket: ok" or why it failed */
  lastProbe: string | null;
  /** duration of the last negotiate request, ms */
  lastNegotiateMs: number | null;
  /** how the last connection ended */
  lastClose: CloseInfo | null;
}

/** Error codes a send, publish or subscribe rejects with: the client's own, then the server's
 * error replies (protocol §10.3); any other status the server sends passes through. */
export type ErrorCode =
  | "closed"
  | "timeout"
  | "queue_full"
  | "payload_too_large"
  | "bad_event"
  | "bad_topic"
  | "unknown_event"
  | "forbidden"
  | "subscription_limit"
  | "handler_error"
  | "bad_data"
  | "unavailable"
  | "presence_disabled"
  | "internal_error"
  | (string & {});

/** The Error a send, publish, subscribe or closed client rejects (or throws) with. */
export interface TransportsError extends Error {
  code: ErrorCode;
}

/** Payload of the "error" event. */
export type ErrorEvent =
  | {
      /** negotiate failed: refused (`status` and `code` set), or no answer (both undefined) */
      type: "negotiate";
      status: number | undefined;
      /** the error body's `error`, else "http_<status>" */
      code: string | undefined;
      message: string;
    }
  | {
      /** the token function threw or rejected; the client retries with backoff */
      type: "token";
      status: undefined;
      code: undefined;
      message: string;
    }
  | {
      /** the server refused a subscription (its `ready` rejects too) */
      type: "subscribe";
      topic: string;
      code: string;
      message: string;
    }
  | {
      /** a topic subscribed with `{presence: true}` has no presence (its messages still come):
       * `code` is the server's ("presence_disabled", "forbidden", "unavailable"), or
       * "unsupported" from a server without presence; its members are forgotten */
      type: "presence";
      topic: string;
      code: string;
      message: string;
    }
  | {
      /** the current transport failed or is reattaching (it may recover on its own) */
      type: "transport";
      transport: TransportName;
      message: string;
    }
  | {
      /** re-authenticating failed (no fresh token from the token function, or the server
       * refused it, or closed again with 4501 at once): the client is closed with `code` 4501
       * and `reason` "credentials refused"; `message` says which */
      type: "reauth";
      code: number;
      reason: string;
      message: string;
    }
  | {
      /** the connection ended with a terminal close code (not 1000): the client is closed */
      type: "close";
      code: number;
      reason: string;
      message: string;
    }
  | {
      /** a subscription handler or event listener threw */
      type: "handler";
      error: unknown;
      message: string;
    };

/** The client's events and their payloads ({@link Client.on}). */
export interface ClientEvents {
  state: { state: State; previous: State };
  /** the transport in use changed (`from` null on the first open) */
  transport: { transport: TransportName; from: TransportName | null; reason: string | null };
  error: ErrorEvent;
  /** a topic was resubscribed after a reconnect or switch: `recovered` false means a gap */
  recovered: { topic: string; recovered: boolean };
  /** a direct message from the server (`channel.send(event, data)`) */
  message: { event: string; data: any };
  /** a presence snapshot was applied to a topic subscribed with `{presence: true}` */
  presence: PresenceSync;
  /** this tab started or stopped holding the connection it shares with other tabs */
  leader: { leader: boolean };
}

/** The presence changes ({@link Client.on}): their listeners get `(topic, member)`. */
export type MemberEvent = "join" | "leave";

/** A realtime client. Create it with {@link connect}. */
export declare class Client {
  /** Like {@link connect} with `share: false`: a connection of its own, never shared. */
  constructor(url: string, options?: Options);
  /** "connecting" until the first open, then "open" / "reconnecting", finally "closed". */
  readonly state: State;
  /** Name of the transport in use, null while not open. */
  readonly transport: TransportName | null;
  /** Public id of the current session, null while not open. */
  readonly id: string | null;
  /** Why the client is not on the first transport (human-readable), null when it is. */
  readonly fallbackReason: string | null;
  /** Counters for debugging (when sharing: the leader's connection's). */
  readonly stats: Stats;
  /** Whether this tab holds the connection: true when not sharing, and for the tab that leads
   * a share group (a "leader" event tells each change). */
  readonly leader: boolean;
  /** Whether this client shares a connection with other tabs of the origin (see `share`). */
  readonly shared: boolean;
  /**
   * Subscribe to a topic; the handler gets every publication once, in order, across reconnects
   * and transport switches.
   * @throws TypeError for an invalid topic or a handler that is not a function
   * @throws TransportsError with code "closed" once the client is closed
   */
  subscribe(topic: string, handler: (pub: Publication) => void, options?: SubscribeOptions): Subscription;
  /**
   * Ask who is subscribed to a topic now (it need not be subscribed). Queued while not
   * connected and sent again after a reconnect until answered, like {@link Client.send}.
   * Rejects with a {@link TransportsError}: "presence_disabled", "forbidden", "bad_topic"...
   */
  presence(topic: string): Promise<PresenceListing>;
  /**
   * The members known now of a topic subscribed with `{presence: true}` (its last snapshot and
   * the joins and leaves since); empty for other topics, before the first snapshot, after a
   * presence error, once unsubscribed or closed.
   */
  members(topic: string): Member[];
  /**
   * Send an EVENT to the application's handler; resolves with its REPLY data. Queued while not
   * connected, re-sent with the same ref after a reconnect (the server applies it once).
   * @param data JSON value, or Uint8Array/ArrayBuffer for a binary frame
   */
  send(event: string, data?: any): Promise<any>;
  /** Ask the server to publish on a topic (allowed only if its publish authoriser says so). */
  publish(topic: string, event: string, data?: any): Promise<any>;
  /** Listen to a client event; returns a function that removes the listener. */
  on<K extends keyof ClientEvents>(name: K, fn: (payload: ClientEvents[K]) => void): () => void;
  /** A member joined ("join") or left ("leave") a topic subscribed with `{presence: true}`:
   * reported once per change, never for a member already known (join) or unknown (leave). */
  on(name: MemberEvent, fn: (topic: string, member: Member) => void): () => void;
  /** Close for good: no reconnect; pending and queued sends reject with code "closed". */
  close(): void;
}

// --- lower level: the codec, the policy and the transports ----------------------------------

/** Protocol version this client speaks. */
export declare const PROTOCOL_VERSION: 1;

/** Frame type numbers (protocol §2). */
export declare const FRAME: Readonly<{
  HELLO: 0;
  PUB: 1;
  MSG: 2;
  EVENT: 3;
  REPLY: 4;
  SUB: 5;
  UNSUB: 6;
  PING: 7;
  PONG: 8;
  CLOSE: 9;
  PUBLISH: 10;
  PRESENCE: 11;
}>;

/** A decoded frame: a JSON array starting with its type (protocol §2). */
export type Frame = any[];

/** Encode one frame; binary data switches it to its binary type, as a WebSocket binary
 * message (`binary` true) or with base64 data. */
export declare function encodeFrame(frame: Frame, binary?: boolean): string | Uint8Array;
/** Decode one frame: JSON text, a WebSocket binary message, or a parsed array.
 * @throws TypeError | SyntaxError when it is not a frame */
export declare function decodeFrame(input: string | ArrayBuffer | ArrayBufferView | any[]): Frame;
/** Standard base64 (with padding) of some bytes. */
export declare function toBase64(bytes: Uint8Array): string;
/** Bytes from standard base64. */
export declare function fromBase64(text: string): Uint8Array;

/** Transports in the order to try: `preferred` first (if allowed), then the rest, `demoted`
 * (for flapping) last. */
export declare function orderTransports(
  transports: readonly TransportName[],
  preferred: TransportName | null,
  demoted?: readonly string[],
): TransportName[];

/** What a close code tells the client: 1001, 1005, 1006, 1011-1015, 4000-4499 reconnect. */
export declare function classifyClose(code: number): "reconnect" | "stop";
/** Full-jitter backoff: uniform in [0, min(max, min * 2^attempt)] ms. */
export declare function backoffDelay(
  attempt: number,
  backoff: { min: number; max: number },
  random?: () => number,
): number;
/** Delay before reconnect attempt `attempt`: the backoff above the server's `retry` hint, at
 * least `retryAfter`. */
export declare function reconnectDelay(
  attempt: number,
  backoff: { min: number; max: number },
  hint: number,
  random?: () => number,
  retryAfter?: number,
): number;
/** ms before a connection silent since `lastReceived` counts as dead (heartbeat + slack). */
export declare function livenessRemaining(lastReceived: number, now: number, heartbeat: number): number;
/** Run `onExpire` after `ms` unless cancelled first (`cancel` returns false when too late). */
export declare function startDeadline(
  clock: Clock,
  ms: number,
  onExpire: () => void,
): { cancel: () => boolean; readonly expired: boolean };

/** readyState values of the transports (the WebSocket ones). */
export declare const READY: Readonly<{ CONNECTING: 0; OPEN: 1; CLOSING: 2; CLOSED: 3 }>;

/** What the client gives a transport it starts. */
export type TransportOptions = {
  fetch: Fetch;
  clock: Clock;
  random: () => number;
  maxMessage: number;
  batch: number;
  body: number;
  hint: number;
} & Record<string, any>;

/** What every transport looks like: a WebSocket whose messages are frames. */
export interface Transport {
  readyState: number;
  maxMessage: number;
  binary: boolean;
  onopen: () => void;
  /** a frame from the server; `uplink`: a REPLY that came in the answer to a POST /send (§6.2) */
  onmessage: (frame: Frame, uplink?: boolean) => void;
  onerror: (error: Error) => void;
  onclose: (info: CloseInfo) => void;
  /** any poll response: the server was heard from */
  onalive: () => void;
  /** the server refused this encoded frame on its own as too large */
  onrefuse: (text: string) => void;
  /** @throws TransportsError "payload_too_large" over `maxMessage` */
  send(frame: Frame): void;
  /** Close without reporting; false if already closed. */
  close(): boolean;
  /** Tell the server the client leaves for good (best effort). */
  leave(): void;
}

/** The static side of a transport class: what the client knows about a transport. */
export interface TransportClass<T extends Transport = Transport> {
  readonly bidirectional: boolean;
  readonly provenBy: number;
  readonly awaiting: string;
  readonly polling: boolean;
  environment(options: Record<string, any>, globals: any): Record<string, any> | null;
  start(url: URL, neg: any, resolve: (path: string) => URL, options: TransportOptions): T;
}

/** WebSocket transport (§4). */
export declare const WebSocketTransport: TransportClass<Transport> & {
  new (url: string, options: { WebSocket: any; maxMessage: number }): Transport;
};
/**
 * Server-Sent Events transport (§5): EventSource down, POST /send up. Each POST asks for its
 * replies in the answer (`Accept: application/json`, §6.2); from an older server they come down.
 */
export declare const SSETransport: TransportClass<Transport> & {
  new (url: string, sendUrl: string, token: string, options: TransportOptions): Transport;
};
/**
 * Long-polling transport (§6): GET /poll down, POST /send up. Each POST asks for its replies in
 * the answer (`Accept: application/json`, §6.2); from an older server they come down.
 */
export declare const LongPollTransport: TransportClass<Transport> & {
  new (pollUrl: string, sendUrl: string, token: string, options: TransportOptions): Transport;
};

// --- the global --------------------------------------------------------------------------------

declare global {
  /** Set when client.js loads (unless already defined), for code that is not a module. */
  var Transports: Readonly<{ connect: typeof connect; version: typeof PROTOCOL_VERSION }> | undefined;
}
