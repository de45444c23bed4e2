// @ts-check
/**
 * The demo page: one `transports` client, a feed of topics, a compose box, who is here on each
 * topic followed (presence), and a status line that says which transport carries it and why.
 *
 * `?transports=sse,longpoll` (any subset, any order) is passed to connect() as the order to try,
 * and the transport that worked is then not remembered (so the order in the URL is the order
 * used). Without it the client's defaults apply: the transport remembered from an earlier page,
 * else a fast start on longpoll that moves up to sse or websocket once a probe finds them working.
 *
 * For tests and the curious, `window.demo` holds the client, the feed and a few helpers.
 */
import { connect } from "/realtime/client.js";
import { Feed, notificationId } from "./feed.js";

/** @type {{realtime: string, topics: {name: string, about: string}[], defaultTopic: string,
 *   maxTitle: number, maxBody: number, keep: number}} */
const config = JSON.parse(/** @type {HTMLElement} */ (document.getElementById("demo-config")).textContent || "{}");
const ALL_TRANSPORTS = ["websocket", "sse", "longpoll"];
const EVENT = "notification";
const HISTORY_LIMIT = 100;

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const testid = (/** @type {string} */ name) => /** @type {HTMLElement} */ (document.querySelector(`[data-testid="${name}"]`));
/** Set text only when it changes (the status line is a live region). @param {HTMLElement} el @param {string} text */
const setText = (el, text) => { if (el.textContent !== text) el.textContent = text; };

// --- the transport order from the URL ------------------------------------------------------------

const asked = new URLSearchParams(location.search).get("transports");
/** @type {string[] | null} */
let forced = null;
/** @type {string[]} */
let ignored = [];
if (asked !== null) {
  const names = asked.split(",").map((name) => name.trim().toLowerCase()).filter(Boolean);
  forced = names.filter((name, i) => ALL_TRANSPORTS.includes(name) && names.indexOf(name) === i);
  ignored = names.filter((name) => !ALL_TRANSPORTS.includes(name));
  if (!forced.length) forced = null;
}
const order = forced || ALL_TRANSPORTS;

// Who this page is: a guest name kept in localStorage. The server reads it from a cookie at
// negotiate and shows it to the others on a topic (presence); it is not a login.
const me = guestName();
try {
  document.cookie = `demo_name=${encodeURIComponent(me)}; path=/; SameSite=Strict`;
} catch (_) { /* cookies blocked: the others see "Guest" */ }

const client = connect(config.realtime, forced
  ? { transports: /** @type {any} */ (forced), storage: null }
  : {});

// --- the feed --------------------------------------------------------------------------------------

const feed = new Feed(/** @type {HTMLOListElement} */ ($("feed")),
  /** @type {HTMLTemplateElement} */ ($("note-template")),
  { max: config.keep, onChange: renderCounts, onRetry: (item) => post(item) });

/** @type {Map<string, {off: () => void, state: "joining" | "following"}>} */
const following = new Map();

function savedTopics() {
  try {
    const saved = JSON.parse(sessionStorage.getItem("demo:topics") || "null");
    if (Array.isArray(saved)) return saved.filter((t) => config.topics.some((k) => k.name === t));
  } catch (_) { /* storage blocked */ }
  return [config.defaultTopic];
}

function saveTopics() {
  try { sessionStorage.setItem("demo:topics", JSON.stringify([...following.keys()])); } catch (_) { /* ignore */ }
}

/** @param {any} pub */
function onPublication(pub) {
  if (pub.event !== EVENT) return;
  feed.add({ id: notificationId(pub), topic: pub.topic, offset: pub.offset, epoch: pub.epoch, data: pub.data },
    { live: true });
}

/** Load the newest notifications of a topic (on join, and after a gap). @param {string} topic */
async function loadHistory(topic) {
  try {
    const res = await fetch(`/api/feed?topics=${encodeURIComponent(topic)}&limit=${HISTORY_LIMIT}`,
      { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    if (!following.has(topic)) return;
    for (const note of body.notifications.slice().reverse()) feed.add(note);
  } catch (error) {
    log(`could not load #${topic}: ${/** @type {Error} */ (error).message}`, "warn");
  }
}

/**
 * Subscribe (following who is here too), then load what the topic already has (duplicates are
 * dropped by id). @param {string} topic
 */
function follow(topic) {
  if (following.has(topic)) return;
  const off = client.subscribe(topic, onPublication, { presence: true });
  const entry = { off, state: /** @type {"joining" | "following"} */ ("joining") };
  following.set(topic, entry);
  saveTopics();
  renderTopics();
  off.ready.then(
    () => {
      if (following.get(topic) !== entry) return;
      entry.state = "following";
      renderTopics();
      renderHere();
      return loadHistory(topic);
    },
    (/** @type {any} */ error) => {
      if (following.get(topic) !== entry) return;
      following.delete(topic);
      saveTopics();
      renderTopics();
      renderHere();
      log(`could not join #${topic}: ${error.code || error.message}`, "warn");
    },
  );
}

/** @param {string} topic */
function leave(topic) {
  const entry = following.get(topic);
  if (!entry) return;
  entry.off();
  following.delete(topic);
  hereErrors.delete(topic);
  saveTopics();
  feed.removeTopic(topic);
  renderTopics();
  renderHere();
  log(`left #${topic}`);
}

// --- composing --------------------------------------------------------------------------------------

const form = /** @type {HTMLFormElement} */ ($("compose"));
const titleInput = /** @type {HTMLInputElement} */ (testid("compose-input"));
const bodyInput = /** @type {HTMLTextAreaElement} */ ($("compose-body"));
const topicSelect = /** @type {HTMLSelectElement} */ ($("compose-topic"));
const counter = $("compose-count");

function guestName() {
  let name = null;
  try { name = localStorage.getItem("demo:name"); } catch (_) { /* ignore */ }
  if (!name) {
    name = `Guest ${Math.floor(Math.random() * 0xffff).toString(16).toUpperCase().padStart(4, "0")}`;
    try { localStorage.setItem("demo:name", name); } catch (_) { /* ignore */ }
  }
  return name;
}

function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Send a post (new, or a retry of a failed one) and follow its item to "sent" or "failed". @param {any} item */
async function post(item) {
  const { data, topic } = item;
  if (item.status === "failed") feed.resending(item);
  if (client.state !== "open") feed.setWaiting(true);
  try {
    const ack = await client.send("notify", { title: data.title, body: data.body, topic, author: data.author,
      nonce: item.nonce });
    feed.confirm(item.nonce, ack);
  } catch (error) {
    const e = /** @type {any} */ (error);
    const code = e.code || "error";
    const prefix = `${code}: `;
    const message = String(e.message || code);
    const reason = message.startsWith(prefix) ? message.slice(prefix.length) : message;
    feed.fail(item.nonce, reason === code ? code : `${reason} (${code})`);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const item = feed.addPending({
    nonce: nonce(),
    topic: topicSelect.value || config.defaultTopic,
    data: { title: titleInput.value.trim(), body: bodyInput.value.trim(), author: me, kind: "info", ts: 0 },
  });
  titleInput.value = "";
  bodyInput.value = "";
  renderCounter();
  titleInput.focus();
  post(item);
});

function renderCounter() {
  const n = titleInput.value.trim().length;
  counter.textContent = `${n} / ${config.maxTitle}`;
  counter.classList.toggle("over", n > config.maxTitle);
}
titleInput.addEventListener("input", renderCounter);

for (const topic of config.topics) {
  const option = document.createElement("option");
  option.value = topic.name;
  option.textContent = `#${topic.name}`;
  topicSelect.append(option);
}
topicSelect.value = config.defaultTopic;

// --- topics --------------------------------------------------------------------------------------------

function renderTopics() {
  const nav = $("topics");
  nav.replaceChildren();
  for (const topic of config.topics) {
    const entry = following.get(topic.name);
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.dataset.testid = `topic-${topic.name}`;
    chip.dataset.topic = topic.name;
    chip.setAttribute("aria-pressed", String(Boolean(entry)));
    chip.title = `${topic.about}. ${entry ? "Click to leave." : "Click to join."}`;
    const name = document.createElement("span");
    name.className = "chip-name";
    name.textContent = `#${topic.name}`;
    const state = document.createElement("span");
    state.className = "chip-state";
    state.textContent = !entry ? "join" : entry.state === "joining" ? "joining…" : "following";
    chip.append(name, state);
    chip.addEventListener("click", () => (entry ? leave(topic.name) : follow(topic.name)));
    nav.append(chip);
  }
}

// --- who is here (presence) ----------------------------------------------------------------------------

/** Why a followed topic shows nobody: its presence error ("presence_disabled"...). @type {Map<string, string>} */
const hereErrors = new Map();

/** A member's name: the identity the server shows (`{name}`), else "anonymous". @param {any} info */
const memberName = (info) => (info && typeof info.name === "string" && info.name ? info.name : "anonymous");

/** A stable colour per name. @param {string} name */
const hue = (name) => [...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);

/** Initials for the avatar: "Guest 1A2B" -> "1A", "Ada Lovelace" -> "AL". @param {string} name */
function initials(name) {
  const words = name.split(/\s+/).filter(Boolean);
  const word = words.length > 1 && words[0] === "Guest" ? words[1] : null;
  if (word) return word.slice(0, 2).toUpperCase();
  return words.slice(0, 2).map((w) => w[0]).join("").toUpperCase() || "?";
}

/**
 * One topic's row: "#all  3 here  [you] [Guest 33F0] [Guest 9A1C ×2]". Tabs with the same name
 * (one person, several tabs) are one chip with their number; this page's chip comes first.
 * @param {string} topic
 */
function hereRow(topic) {
  const entry = following.get(topic);
  const members = client.members(topic);
  /** @type {Map<string, {tabs: number, mine: boolean}>} */
  const people = new Map();
  for (const member of members) {
    const name = memberName(member.info);
    const person = people.get(name) || { tabs: 0, mine: false };
    person.tabs++;
    if (member.id === client.id) person.mine = true;
    people.set(name, person);
  }
  const error = hereErrors.get(topic);
  const waiting = !error && (!entry || entry.state === "joining" || client.state !== "open") && !members.length;
  const li = document.createElement("li");
  li.className = "here-topic";
  li.dataset.testid = `here-${topic}`;
  li.dataset.topic = topic;
  li.dataset.status = error ? "error" : waiting ? "waiting" : "live";
  const label = document.createElement("span");
  label.className = "here-name";
  label.textContent = `#${topic}`;
  const count = document.createElement("span");
  count.className = "here-count";
  count.dataset.testid = `here-count-${topic}`;
  count.textContent = error ? `presence unavailable (${error})` : waiting ? "…" : `${members.length} here`;
  li.append(label, count);
  if (error || waiting) return li;
  const list = document.createElement("ul");
  list.className = "members";
  const sorted = [...people].sort(([a, p], [b, q]) => Number(q.mine) - Number(p.mine) || a.localeCompare(b));
  for (const [name, person] of sorted) {
    const chip = document.createElement("li");
    chip.className = "member";
    chip.dataset.testid = "member";
    chip.dataset.name = name;
    if (person.mine) chip.dataset.me = "";
    chip.title = `${name}${person.tabs > 1 ? `: ${person.tabs} tabs` : ""}${person.mine ? " (this page)" : ""}`;
    const avatar = document.createElement("span");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.style.setProperty("--hue", String(hue(name)));
    avatar.textContent = initials(name);
    const text = document.createElement("span");
    text.className = "member-name";
    text.textContent = name;
    chip.append(avatar, text);
    if (person.mine) chip.append(Object.assign(document.createElement("span"), { className: "member-you", textContent: "you" }));
    if (person.tabs > 1) chip.append(Object.assign(document.createElement("span"), { className: "member-tabs", textContent: `×${person.tabs}` }));
    list.append(chip);
  }
  li.append(list);
  return li;
}

function renderHere() {
  const rows = config.topics.filter((topic) => following.has(topic.name)).map((topic) => hereRow(topic.name));
  if (!rows.length) {
    const li = document.createElement("li");
    li.className = "here-empty";
    li.textContent = "Join a topic to see who is here.";
    rows.push(li);
  }
  $("here-topics").replaceChildren(...rows);
}

// Leaving the page (not into the back-forward cache) closes the client by itself: the others see
// this tab leave at once (browser client, "Leaving the page").

client.on("presence", ({ topic }) => {
  hereErrors.delete(topic);
  renderHere();
});
client.on("join", (topic, member) => {
  renderHere();
  if (member.id !== client.id) log(`${memberName(member.info)} joined #${topic}`);
});
client.on("leave", (topic, member) => {
  renderHere();
  if (member.id !== client.id) log(`${memberName(member.info)} left #${topic}`);
});

// --- unread ---------------------------------------------------------------------------------------------

const markRead = /** @type {HTMLButtonElement} */ ($("mark-read"));
markRead.addEventListener("click", () => feed.markAllRead());

function renderCounts() {
  const unread = feed.unread;
  testid("unread-count").textContent = String(unread);
  markRead.disabled = unread === 0;
  markRead.classList.toggle("has-unread", unread > 0);
  markRead.title = unread ? "Mark all as read" : "Nothing unread";
  document.title = `${unread ? `(${unread}) ` : ""}Notifications · transports demo`;
  $("empty").hidden = feed.items.length > 0;
}

// --- status line, transports panel, connection log -------------------------------------------------

const LABEL = { websocket: "WebSocket", sse: "Server-Sent Events", longpoll: "long-polling" };
const ABOUT = {
  websocket: "one socket, both directions; needs a proxy that passes the upgrade",
  sse: "a streaming GET down, POST /send up; needs a proxy that does not buffer",
  longpoll: "held GETs down, POST /send up; works through almost anything",
};

function renderStatus() {
  const state = client.state;
  const transport = client.transport;
  const status = $("status");
  status.dataset.state = state;
  setText(testid("transport"), transport || "none");
  setText(testid("state"), state);
  setText(testid("reconnects"), String(client.stats.reconnects));
  setText(testid("attempts"), String(Math.max(0, client.stats.attempts - 1)));
  // Tab sharing: the tabs of this page share one connection; one of them holds it.
  $("tab-field").hidden = !client.shared;
  setText(testid("tab-role"), client.leader ? "leads" : "follows");
  const headline = state === "open" && transport ? `Live via ${LABEL[transport]}`
    : state === "reconnecting" ? "Reconnecting…"
    : state === "closed" ? "Disconnected"
    : "Connecting…";
  setText($("status-headline"), headline);
  setText($("status-why"), why());
  renderTransports();
}

/** A sentence: what was negotiated and why it is not the first choice. */
function why() {
  const transport = client.transport;
  const source = forced ? "?transports=" : "default order";
  if (client.state === "closed") {
    const last = client.stats.lastClose;
    return `The server ended the connection${last ? ` (${last.code} ${last.reason || ""})` : ""}: reload to connect again.`;
  }
  if (!transport) {
    const last = client.stats.fallbacks[client.stats.fallbacks.length - 1];
    return last && client.state !== "reconnecting"
      ? `Trying the next transport: ${last.reason}.`
      : client.state === "reconnecting" ? "Lost the connection; retrying with backoff, posts wait in a queue."
      : `Trying ${order.join(" → ")} (${source}).`;
  }
  if (transport === order[0]) return `Negotiated ${transport}: the first choice of ${order.join(" → ")} (${source}) worked.`;
  return `Negotiated ${transport}, not ${order[0]}: ${client.fallbackReason || "an earlier choice failed"}.`;
}

let transportsKey = "";
function renderTransports() {
  const fallbacks = client.stats.fallbacks;
  const key = JSON.stringify([client.transport, fallbacks.length, fallbacks[fallbacks.length - 1]]);
  if (key === transportsKey) return;
  transportsKey = key;
  $("order-note").textContent = forced
    ? `Order from the URL: ${forced.join(" → ")}${ignored.length ? ` (ignored: ${ignored.join(", ")})` : ""}.`
    : "Order: websocket → sse → longpoll (the default).";
  const list = $("transports");
  list.replaceChildren();
  for (const name of ALL_TRANSPORTS) {
    const li = document.createElement("li");
    li.dataset.transport = name;
    const head = document.createElement("div");
    head.className = "t-head";
    const title = document.createElement("b");
    title.textContent = name;
    const badge = document.createElement("span");
    badge.className = "badge";
    const failed = [...client.stats.fallbacks].reverse().find((f) => f.from === name);
    let status = "";
    if (!order.includes(name)) status = "not in the order";
    else if (client.transport === name) status = "active";
    else if (failed) status = "fell back";
    else if (client.transport && order.indexOf(name) > order.indexOf(client.transport)) status = "not needed";
    else status = "waiting";
    badge.textContent = status;
    li.dataset.status = status.replace(/ /g, "-");
    head.append(title, badge);
    const about = document.createElement("p");
    about.className = "small muted";
    about.textContent = failed && status === "fell back" ? failed.reason : ABOUT[/** @type {keyof ABOUT} */ (name)];
    li.append(head, about);
    list.append(li);
  }
}

function renderLinks() {
  const links = $("transport-links");
  const choices = [["default", ""], ["sse,longpoll", "sse,longpoll"], ["sse", "sse"], ["longpoll", "longpoll"],
    ["longpoll,sse", "longpoll,sse"]];
  for (const [label, value] of choices) {
    const a = document.createElement("a");
    a.href = value ? `?transports=${value}` : location.pathname;
    a.textContent = label;
    if ((forced ? forced.join(",") : "") === value) a.setAttribute("aria-current", "page");
    links.append(a, " ");
  }
}

/** @param {string} text @param {"info" | "warn" | "good"} [level] */
function log(text, level = "info") {
  const list = $("log");
  const li = document.createElement("li");
  li.className = level;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString([], { hour12: false });
  li.append(time, ` ${text}`);
  list.prepend(li);
  while (list.children.length > 50) list.lastElementChild?.remove();
}

/** @param {string} text */
function notice(text) {
  $("notice-text").textContent = text;
  $("notice").hidden = false;
}
$("notice-close").addEventListener("click", () => { $("notice").hidden = true; });

client.on("state", ({ state, previous }) => {
  renderStatus();
  renderHere();
  log(`state ${previous} → ${state}`, state === "open" ? "good" : state === "reconnecting" ? "warn" : "info");
  feed.setWaiting(state !== "open");
});
client.on("leader", ({ leader }) => {
  renderStatus();
  log(leader ? "this tab now holds the connection the tabs share" : "another tab holds the connection now", "info");
});
client.on("transport", ({ transport, from, reason }) => {
  renderStatus();
  log(from ? `switched ${from} → ${transport}${reason ? `: ${reason}` : ""}`
    : `connected with ${transport}${reason ? ` (${reason})` : ""}`, "good");
});
client.on("error", (error) => {
  renderStatus();
  if (error.type === "presence") {
    hereErrors.set(error.topic, error.code);
    renderHere();
  }
  if (error.type !== "handler") log(`${error.type}: ${error.message || error.code}`, "warn");
  else console.error(error.error);
});
client.on("recovered", ({ topic, recovered }) => {
  if (recovered) {
    log(`resumed #${topic}: nothing missed`, "good");
    return;
  }
  log(`#${topic}: missed notifications while offline; reloaded`, "warn");
  notice(`Missed some notifications in #${topic} while offline (the server restarted or the gap was too long): reloaded the feed.`);
  loadHistory(topic);
});

// --- start -------------------------------------------------------------------------------------------

if (ignored.length) notice(`Unknown transports in the URL ignored: ${ignored.join(", ")}.`);
if (asked !== null && !forced) notice("No known transport in ?transports=: using the default order.");
$("snippet").textContent = [
  `curl -X POST ${location.origin}/api/notify \\`,
  "  -H 'Content-Type: application/json' \\",
  `  -d '{"title": "Hello from a script", "topic": "${config.defaultTopic}"}'`,
].join("\n");
if (!window.matchMedia("(max-width: 899px)").matches) {
  /** @type {HTMLDetailsElement} */ ($("panel-log")).open = true;
}
$("details-toggle").addEventListener("click", () => {
  const open = /** @type {HTMLElement} */ (document.querySelector(".layout")).classList.toggle("details-open");
  $("details-toggle").setAttribute("aria-expanded", String(open));
  $("details-toggle").textContent = open ? "Hide details" : "Details";
});
renderLinks();
renderStatus();
renderCounts();
renderCounter();
log(`connecting: ${order.join(" → ")}`);
for (const topic of savedTopics()) follow(topic);
renderTopics();
renderHere();
setInterval(() => feed.refreshTimes(), 10_000);
setInterval(renderStatus, 1_000);

Object.assign(window, { demo: { client, feed, follow, leave, order } });
