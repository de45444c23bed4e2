// Frame codec (protocol §2, §2.2): exact text and bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFrame, encodeFrame, fromBase64, toBase64 } from "../../transports/static/client.js";

const te = new TextEncoder();
const bytesOf = (head, data) => new Uint8Array([...te.encode(head), 0, ...data]);

test("text frames are compact JSON arrays", () => {
  assert.equal(encodeFrame([3, 7, "chat.send", { text: "hi" }]), '[3,7,"chat.send",{"text":"hi"}]');
  assert.equal(encodeFrame([5, 8, "news", ["aZ3f", 41]]), '[5,8,"news",["aZ3f",41]]');
  assert.equal(encodeFrame([7]), "[7]");
});

test("binary EVENT on a text transport is type 19 with base64 data (the §2.2 example)", () => {
  assert.equal(encodeFrame([3, 7, "upload", new Uint8Array([0, 1, 2, 255])], false), '[19,7,"upload","AAEC/w=="]');
});

test("binary EVENT on WebSocket is JSON with null data, a NUL byte, then the raw bytes", () => {
  const out = encodeFrame([3, 7, "upload", new Uint8Array([0, 1, 2, 255])], true);
  assert.ok(out instanceof Uint8Array);
  assert.deepEqual([...out], [...bytesOf('[19,7,"upload",null]', [0, 1, 2, 255])]);
});

test("binary PUBLISH puts the data at index 4 and uses type 26; ArrayBuffer and views count as binary", () => {
  const buffer = new Uint8Array([9, 8, 7]).buffer;
  assert.equal(encodeFrame([10, 3, "room", "draw", buffer], false), '[26,3,"room","draw","CQgH"]');
  const view = new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2);
  assert.equal(encodeFrame([3, 1, "x", view], false), '[19,1,"x","AgM="]');
});

test("frames without binary data keep their type even on WebSocket", () => {
  assert.equal(encodeFrame([3, 1, "x", { a: [1, 2] }], true), '[3,1,"x",{"a":[1,2]}]');
});

test("decodes text frames and ignores nothing it was given", () => {
  assert.deepEqual(decodeFrame('[1,"news","new",{"title":"ok"},42,"aZ3f"]'), [1, "news", "new", { title: "ok" }, 42, "aZ3f"]);
  assert.deepEqual(decodeFrame('[2,"tick",1,"future"]'), [2, "tick", 1, "future"]);
});

test("decodes base64 binary frames (PUB 17, MSG 18, REPLY 20) to their text type with Uint8Array data", () => {
  const pub = decodeFrame('[17,"files","chunk","AAEC/w==",5,"e1"]');
  assert.equal(pub[0], 1);
  assert.ok(pub[3] instanceof Uint8Array);
  assert.deepEqual([...pub[3]], [0, 1, 2, 255]);
  assert.deepEqual([pub[4], pub[5]], [5, "e1"]);
  const msg = decodeFrame([18, "blob", "AQI="]); // a long-poll response gives parsed arrays
  assert.deepEqual([msg[0], msg[1], [...msg[2]]], [2, "blob", [1, 2]]);
  const reply = decodeFrame('[20,4,"ok","/w=="]');
  assert.deepEqual([reply[0], reply[1], reply[2], [...reply[3]]], [4, 4, "ok", [255]]);
});

test("decodes WebSocket binary messages from ArrayBuffer or Uint8Array, NUL bytes in data included", () => {
  const message = bytesOf('[18,"blob",null]', [0, 0, 7]);
  for (const input of [message, message.buffer]) {
    const frame = decodeFrame(input);
    assert.equal(frame[0], 2);
    assert.deepEqual([...frame[2]], [0, 0, 7]);
  }
});

test("every byte value survives both binary encodings", () => {
  const all = new Uint8Array(256).map((_, i) => i);
  const viaText = decodeFrame(encodeFrame([4, 1, "ok", all], false));
  assert.deepEqual([...viaText[3]], [...all]);
  const viaWs = decodeFrame(encodeFrame([4, 1, "ok", all], true));
  assert.deepEqual([...viaWs[3]], [...all]);
  assert.deepEqual([...fromBase64(toBase64(all))], [...all]);
});

test("UTF-8 text in the JSON header of a binary message round-trips", () => {
  const out = encodeFrame([3, 1, "x", new Uint8Array([1])], true);
  assert.equal(new TextDecoder().decode(out.subarray(0, out.indexOf(0))), '[19,1,"x",null]');
  const withText = decodeFrame(bytesOf('[20,1,"ok",null,"héllo ✓"]', [5]));
  assert.equal(withText[4], "héllo ✓");
});

test("refuses input that is not a frame", () => {
  assert.throws(() => decodeFrame('{"a":1}'), TypeError);
  assert.throws(() => decodeFrame("[]"), TypeError);
  assert.throws(() => decodeFrame('["x"]'), TypeError);
  assert.throws(() => decodeFrame("[1,"), SyntaxError);
  assert.throws(() => decodeFrame(new Uint8Array([91, 50, 93])), TypeError); // no NUL
  assert.throws(() => decodeFrame('[23,"x",null]'), TypeError); // SUB cannot be binary
  assert.throws(() => decodeFrame('[18,"blob",null]'), TypeError); // base64 form needs a string
  assert.throws(() => decodeFrame(bytesOf('[2,"x",null]', [1])), TypeError); // binary message, text type
});
