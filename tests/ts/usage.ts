/**
 * A typed use of every declaration in transports/static/client.d.ts, checked by `tsc --noEmit`
 * (strict, tsconfig.json) and never run. It is how a TypeScript application uses the client;
 * when a declaration changes in a way that breaks applications, this file stops compiling.
 */

import {
  Client,
  DEFAULTS,
  FRAME,
  LongPollTransport,
  PROTOCOL_VERSION,
  READY,
  SSETransport,
  WebSocketTransport,
  backoffDelay,
  classifyClose,
  connect,
  decodeFrame,
  encodeFrame,
  fromBase64,
  livenessRemaining,
  orderTransports,
  reconnectDelay,
  startDeadline,
  toBase64,
} from "../../transports/static/client.js";
import type {
  ClientEvents,
  Clock,
  CloseInfo,
  ErrorCode,
  ErrorEvent,
  Fetch,
  Frame,
  Member,
  MemberEvent,
  Options,
  PresenceListing,
  PresenceSync,
  Publication,
  State,
  Stats,
  SubscribeOptions,
  SubscribeResult,
  Subscription,
  Transport,
  TransportClass,
  TransportName,
  TransportOptions,
  TransportsError,
} from "../../transports/static/client.js";

// --- connect() with every option ---------------------------------------------------------------

const clock: Clock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
  now: () => Date.now(),
};
const fetchLike: Fetch = (url, init) => fetch(url, init);
let refreshed = 0;

const options: Options = {
  transports: ["websocket", "sse", "longpoll"],
  deadlines: { websocket: 2500, sse: 2500, longpoll: 10000 },
  backoff: { min: 500, max: 20000 },
  failback: { min: 30000, max: 600000 },
  token: async () => `token-${++refreshed}`,
  sendTimeout: 10000,
  maxQueue: 1000,
  storage: sessionStorage,
  rememberMs: 10 * 60 * 1000,
  WebSocket,
  EventSource,
  fetch: fetchLike,
  clock,
  random: Math.random,
  window,
  document,
  navigator: { onLine: true },
  share: true,
  shareKey: "user-42",
  BroadcastChannel,
  locks: navigator.locks,
};
const noFailback: Options = { failback: false, storage: null, token: "static-token" };
const syncToken: Options = { token: () => "from-a-cookie-or-a-store" };

const rt: Client = connect("/realtime", options);
const other = new Client("https://example.com/realtime", noFailback);
const third = connect("/realtime", syncToken);
const fourth = connect("/realtime");

// --- properties --------------------------------------------------------------------------------

const state: State = rt.state;
const transport: TransportName | null = rt.transport;
const id: string | null = rt.id;
const reason: string | null = rt.fallbackReason;
const stats: Stats = rt.stats;
const leads: boolean = rt.leader;
const sharing: boolean = rt.shared;
const ownConnection = connect("/realtime", { share: false });
console.log(leads ? "leads" : sharing ? "follows" : "alone", ownConnection.leader);

function describe(s: Stats): string {
  const fallbacks = s.fallbacks.map((f) => `${f.from} -> ${f.to ?? "none"}: ${f.reason} @${f.at}`);
  const switches = s.switches.map((w) => `${w.from} -> ${w.to} @${w.at}`);
  const close: CloseInfo | null = s.lastClose;
  const closeText = close ? `${close.code} ${close.reason} ${close.retryAfter ?? 0}` : "none";
  return [
    `attempts ${s.attempts}, reconnects ${s.reconnects}, probes ${s.probes}`,
    `last probe ${s.lastProbe ?? "-"}, negotiate ${s.lastNegotiateMs ?? "-"} ms, close ${closeText}`,
    ...fallbacks,
    ...switches,
  ].join("\n");
}
console.log(state, transport, id, reason, describe(stats));

// --- subscribe, send, publish --------------------------------------------------------------------

const handler = (pub: Publication): void => {
  const { id: pubId, topic, event, data, offset, epoch } = pub;
  console.log(pubId, topic, event, data, offset, epoch);
};
const sub: Subscription = rt.subscribe("news", handler);
sub.ready.then((result: SubscribeResult) => {
  console.log(result.recovered, result.epoch, result.offset);
});
sub();

function errorCode(error: unknown): ErrorCode | undefined {
  return error instanceof Error && "code" in error ? (error as TransportsError).code : undefined;
}

async function talk(client: Client): Promise<void> {
  try {
    const reply: { ok: boolean } = await client.send("chat.send", { text: "hi" });
    console.log(reply.ok);
    await client.send("upload", new Uint8Array([1, 2, 3]));
    await client.send("ping");
    await client.publish("room:1", "message", { text: "to everyone" });
    await client.publish("room:1", "bare");
  } catch (error) {
    const code = errorCode(error);
    if (code === "timeout" || code === "queue_full" || code === "closed") console.log("retry later");
  }
}
void talk(rt);

// --- presence: who is here -----------------------------------------------------------------------

const withPresence: SubscribeOptions = { presence: true };
const room: Subscription = rt.subscribe("room:1", handler, withPresence);
const names = (members: Member[]): string[] => members.map((m) => `${m.id}: ${JSON.stringify(m.info)}`);
const here: Member[] = rt.members("room:1");
console.log(names(here));
const onChange = (topic: string, member: Member): void => {
  console.log(topic, member.id, member.info, names(rt.members(topic)).length);
};
const memberEvents: MemberEvent[] = ["join", "leave"];
const presenceOffs: (() => void)[] = [
  rt.on("join", onChange),
  rt.on("leave", (topic, member) => console.log("left", topic, member.id)),
  ...memberEvents.map((name) => rt.on(name, onChange)),
  rt.on("presence", (sync: PresenceSync) => {
    console.log(sync.topic, sync.count, sync.truncated, sync.events, names(sync.members));
  }),
];
async function whoIsThere(client: Client): Promise<number> {
  try {
    const listing: PresenceListing = await client.presence("room:1");
    return listing.truncated ? listing.count : listing.members.length;
  } catch (error) {
    if (errorCode(error) === "presence_disabled") return 0;
    throw error;
  }
}
void whoIsThere(rt);
for (const off of presenceOffs) off();
room();

// --- events --------------------------------------------------------------------------------------

const offs: (() => void)[] = [
  rt.on("state", ({ state: now, previous }) => console.log(previous, "->", now)),
  rt.on("transport", (t) => console.log(t.transport, t.from, t.reason)),
  rt.on("recovered", (r) => {
    if (!r.recovered) console.log("gap in", r.topic);
  }),
  rt.on("message", (m) => console.log(m.event, m.data)),
  rt.on("leader", ({ leader }) => console.log(leader ? "this tab leads" : "this tab follows")),
  rt.on("error", (e: ErrorEvent) => {
    switch (e.type) {
      case "negotiate":
        return console.log(e.status, e.code, e.message);
      case "token":
        return console.log(e.message);
      case "subscribe":
        return console.log(e.topic, e.code, e.message);
      case "presence":
        return console.log(e.topic, e.code, e.message);
      case "transport":
        return console.log(e.transport, e.message);
      case "close":
        return console.log(e.code, e.reason, e.message);
      case "handler":
        return console.log(e.error, e.message);
    }
  }),
];
const listener = <K extends keyof ClientEvents>(name: K) => (payload: ClientEvents[K]) => console.log(name, payload);
offs.push(other.on("state", listener("state")));
for (const off of offs) off();

rt.close();
other.close();
third.close();
fourth.close();

// --- lower level ---------------------------------------------------------------------------------

const version: 1 = PROTOCOL_VERSION;
const frame: Frame = [FRAME.EVENT, 1, "upload", new Uint8Array([0, 1])];
const text = encodeFrame(frame);
const binary: string | Uint8Array = encodeFrame(frame, true);
const decoded: Frame = decodeFrame(typeof text === "string" ? text : new Uint8Array(text));
decodeFrame(new ArrayBuffer(0));
decodeFrame([FRAME.PING]);
const base64: string = toBase64(fromBase64("AAE="));
const types = [FRAME.HELLO, FRAME.PUB, FRAME.MSG, FRAME.REPLY, FRAME.SUB, FRAME.UNSUB, FRAME.PING,
  FRAME.PONG, FRAME.CLOSE, FRAME.PUBLISH, FRAME.PRESENCE];
console.log(version, binary, decoded, base64, types);

const order: TransportName[] = orderTransports(DEFAULTS.transports, "sse");
const defaults = [DEFAULTS.deadlines["websocket"], DEFAULTS.backoff.min, DEFAULTS.backoff.max,
  DEFAULTS.failback.min, DEFAULTS.failback.max, DEFAULTS.sendTimeout, DEFAULTS.maxQueue,
  DEFAULTS.rememberMs];
const decision: "reconnect" | "stop" = classifyClose(1006);
const delays: number[] = [
  backoffDelay(3, DEFAULTS.backoff),
  backoffDelay(3, { min: 100, max: 1000 }, () => 0.5),
  reconnectDelay(0, DEFAULTS.backoff, 1000),
  reconnectDelay(2, DEFAULTS.backoff, 0, Math.random, 5000),
  livenessRemaining(0, 1000, 25000),
];
const deadline = startDeadline(clock, 100, () => console.log("expired"));
const cancelled: boolean = deadline.cancel();
const expired: boolean = deadline.expired;
console.log(order, defaults, decision, delays, cancelled, expired);

const states: number[] = [READY.CONNECTING, READY.OPEN, READY.CLOSING, READY.CLOSED];
const classes: TransportClass[] = [WebSocketTransport, SSETransport, LongPollTransport];
for (const kind of classes) {
  console.log(kind.bidirectional, kind.provenBy, kind.awaiting, kind.polling, kind.environment({}, globalThis));
}
const transportOptions: TransportOptions = {
  fetch: fetchLike, clock, random: Math.random, maxMessage: 65536, batch: 100, body: 1 << 20, hint: 0,
  EventSource,
};
const transports: Transport[] = [
  new WebSocketTransport("wss://example.com/realtime/ws?ticket=t", { WebSocket, maxMessage: 65536 }),
  new SSETransport("https://example.com/realtime/sse?ticket=t", "https://example.com/realtime/send", "tok",
    transportOptions),
  new LongPollTransport("https://example.com/realtime/poll", "https://example.com/realtime/send", "tok",
    transportOptions),
  WebSocketTransport.start(new URL("https://example.com/realtime/ws"), {}, (path) => new URL(path),
    transportOptions),
];
for (const t of transports) {
  t.onopen = () => t.send([FRAME.PING]);
  t.onmessage = (f: Frame) => console.log(f[0]);
  t.onerror = (error: Error) => console.log(error.message);
  t.onclose = (info: CloseInfo) => console.log(info.code, info.reason);
  t.onalive = () => undefined;
  t.onrefuse = (encoded: string) => console.log(encoded.length);
  console.log(t.readyState === READY.OPEN, t.maxMessage, t.binary);
  t.leave();
  const wasOpen: boolean = t.close();
  console.log(wasOpen);
}
console.log(states);

// --- the global, for code that is not a module ---------------------------------------------------

const global = globalThis.Transports;
if (global) {
  const viaGlobal: Client = global.connect("/realtime", { transports: ["longpoll"] });
  const globalVersion: 1 = global.version;
  console.log(viaGlobal.state, globalVersion);
}
