// @ts-check
/**
 * The wire codec (protocol §2): frames are JSON arrays; binary data travels as base64 (text) or
 * after a NUL byte (a WebSocket binary message). Also the protocol's name rule (§2.1) and the
 * coded errors the client rejects with. Pure: no I/O, no timers.
 */

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Frame type numbers (protocol §2). A binary frame's type is its text type + 16 (§2.2). */
export const FRAME = Object.freeze({
  HELLO: 0, PUB: 1, MSG: 2, EVENT: 3, REPLY: 4, SUB: 5, UNSUB: 6, PING: 7, PONG: 8, CLOSE: 9,
  PUBLISH: 10, PRESENCE: 11,
});

/** Added to a frame type when its data is binary (§2.2). */
const BINARY = 16;

/** Position of `data` in each frame type that can carry binary data. */
const DATA_INDEX = /** @type {Readonly<Record<number, number>>} */ (
  Object.freeze({ 1: 3, 2: 2, 3: 3, 4: 3, 10: 4 })
);

/** @typedef {any[]} Frame */

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** The bytes of a binary value, or null when it is not binary. @param {unknown} value @returns {Uint8Array | null} */
export function asBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

/**
 * Standard base64 (with padding) of some bytes.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, /** @type {any} */ (bytes.subarray(i, i + 0x8000)));
  }
  return btoa(text);
}

/**
 * Bytes from standard base64.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * Encode one frame. Binary data (Uint8Array, ArrayBuffer or any view) switches the frame to its
 * binary type (+16): with `binary` true it becomes a WebSocket binary message (JSON with null
 * data, one NUL byte, the raw bytes), otherwise JSON text with the data as base64.
 * @param {Frame} frame e.g. `[3, 7, "upload", new Uint8Array([0, 1])]`
 * @param {boolean} [binary] whether the transport carries binary messages (WebSocket)
 * @returns {string | Uint8Array}
 */
export function encodeFrame(frame, binary = false) {
  const index = DATA_INDEX[frame[0]];
  const bytes = index === undefined ? null : asBytes(frame[index]);
  if (!bytes) return JSON.stringify(frame);
  const copy = frame.slice();
  copy[0] = frame[0] + BINARY;
  if (!binary) {
    copy[index] = toBase64(bytes);
    return JSON.stringify(copy);
  }
  copy[index] = null;
  const head = utf8Encoder.encode(JSON.stringify(copy));
  const message = new Uint8Array(head.length + 1 + bytes.length);
  message.set(head, 0);
  message[head.length] = 0;
  message.set(bytes, head.length + 1);
  return message;
}

/**
 * Decode one frame: JSON text, a WebSocket binary message, or an already parsed array (a
 * long-poll response). Binary frames come back with their text type and a Uint8Array as data.
 * @param {string | ArrayBuffer | ArrayBufferView | any[]} input
 * @returns {Frame}
 * @throws {TypeError | SyntaxError} when the input is not a frame
 */
export function decodeFrame(input) {
  /** @type {unknown} */
  let parsed;
  /** @type {Uint8Array | null} */
  let raw = null;
  if (typeof input === "string") parsed = JSON.parse(input);
  else if (Array.isArray(input)) parsed = input.slice();
  else {
    const bytes = asBytes(input);
    if (!bytes) throw new TypeError("a frame is a string, an array or bytes");
    const nul = bytes.indexOf(0);
    if (nul < 0) throw new TypeError("binary message without a NUL separator");
    parsed = JSON.parse(utf8Decoder.decode(bytes.subarray(0, nul)));
    raw = bytes.slice(nul + 1);
  }
  if (!Array.isArray(parsed) || !Number.isInteger(parsed[0])) {
    throw new TypeError("a frame is a JSON array starting with its type");
  }
  const frame = parsed;
  if (frame[0] >= BINARY) {
    const type = frame[0] - BINARY;
    const index = DATA_INDEX[type];
    if (index === undefined) throw new TypeError(`frame type ${frame[0]} cannot be binary`);
    if (raw) frame[index] = raw;
    else if (typeof frame[index] === "string") frame[index] = fromBase64(frame[index]);
    else throw new TypeError("binary frame without base64 data");
    frame[0] = type;
  } else if (raw) {
    throw new TypeError(`frame type ${frame[0]} sent as a binary message`);
  }
  return frame;
}

/** UTF-8 byte length of a string, or the length of bytes. @param {string | Uint8Array} value */
export const byteLength = (value) => (typeof value === "string" ? utf8Encoder.encode(value).length : value.length);

/** Application data as a frame carries it: null for undefined, bytes as a Uint8Array. @param {any} data */
export const normalizeData = (data) => (data === undefined ? null : asBytes(data) || data);

/** Event and topic names (§2.1); `$` topics are reserved and never match. */
const NAME_RE = /^[A-Za-z0-9_\-.:/@=+]+$/;

/** @param {unknown} name @param {number} max @returns {boolean} */
export const validName = (name, max) => typeof name === "string" && name.length <= max && NAME_RE.test(name);

/** The one reserved topic a client may subscribe to: a diagnose run's `$diagnose:<id>`. */
const DIAGNOSE_TOPIC_RE = /^\$diagnose:[A-Za-z0-9_-]{8,64}$/;

/**
 * A topic the client may subscribe to (§2.1): a valid name, or a diagnose run's reserved
 * `$diagnose:<id>` topic (served only when the server's `diagnose` setting is on).
 * @param {unknown} topic @returns {boolean}
 */
export const validTopic = (topic) => validName(topic, 200) || (typeof topic === "string" && DIAGNOSE_TOPIC_RE.test(topic));

/** An Error with a `code` (a §10.3 status, "timeout", "closed"...). @param {string} code @param {string} [message] */
export function codeError(code, message) {
  const error = /** @type {Error & {code: string}} */ (new Error(message ? `${code}: ${message}` : code));
  error.code = code;
  return error;
}
