// Every fixture under protocol/fixtures must decode with this library's
// decoders, and the fixtures, the Rust enums and the TS op and push lists
// must name the same frame kinds: a new frame without a TS type fails here.

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  DecodeError,
  OPS,
  PUSH_TYPES,
  decodeReply,
  decodeRequest,
  decodeServerFrame,
  isOp,
  isRequest,
  isServerFrame,
} from "../src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..", "..", "..");
const fixtures = path.join(repo, "protocol", "fixtures");

function load(dir: string): [string, unknown][] {
  const full = path.join(fixtures, dir);
  const names = readdirSync(full).filter((n) => n.endsWith(".json")).sort();
  assert.ok(names.length > 0, `no fixtures in ${full}`);
  return names.map((n) => [n, JSON.parse(readFileSync(path.join(full, n), "utf8"))]);
}

/** The `#[serde(rename = "...")]` names of one Rust enum. */
function rustNames(file: string, enumName: string): Set<string> {
  const text = readFileSync(path.join(repo, "protocol", "src", file), "utf8");
  const start = text.indexOf(`pub enum ${enumName}`);
  assert.ok(start >= 0, `enum ${enumName} in ${file}`);
  let depth = 0;
  let end = start;
  for (let i = text.indexOf("{", start); i < text.length; i++) {
    if (text[i] === "{") depth++;
    if (text[i] === "}" && --depth === 0) {
      end = i;
      break;
    }
  }
  const body = text.slice(start, end);
  return new Set([...body.matchAll(/#\[serde\(rename = "([^"]+)"\)\]\s+[A-Z]/g)].map((m) => m[1]!));
}

test("every client fixture decodes as a request, and every op has one", () => {
  const seen = new Set<string>();
  for (const [name, value] of load("client")) {
    const request = decodeRequest(value);
    assert.equal(`${request.type}.json`, name, `${name} is named after its op`);
    assert.ok(isRequest(value));
    seen.add(request.type);
  }
  assert.deepEqual([...seen].sort(), [...OPS].sort(), "the client fixtures cover exactly the TS ops");
});

test("every server fixture decodes as a server frame, ok data by its op", () => {
  const pushes = new Set<string>();
  const replies = new Set<string>();
  for (const [name, value] of load("server")) {
    const frame = decodeServerFrame(value);
    assert.ok(isServerFrame(value), name);
    if (frame.type === "ok") {
      const op = name.replace(/^ok\./, "").replace(/\.json$/, "");
      assert.ok(isOp(op), `${name} names an op`);
      decodeReply(op, frame.data);
      replies.add(op);
    } else if (frame.type !== "error") {
      pushes.add(frame.type);
    }
  }
  assert.deepEqual([...pushes].sort(), [...PUSH_TYPES].sort(), "the server fixtures cover exactly the TS pushes");
  assert.deepEqual([...replies].sort(), [...OPS].sort(), "every op has an ok fixture");
});

test("the Rust Request and ServerFrame enums name exactly the TS ops and frames", () => {
  assert.deepEqual([...rustNames("request.rs", "Request")].sort(), [...OPS].sort());
  assert.deepEqual(
    [...rustNames("server.rs", "ServerFrame")].sort(),
    ["error", "ok", ...PUSH_TYPES].sort(),
  );
});

test("the decoders refuse unknown kinds and broken frames", () => {
  assert.throws(() => decodeServerFrame({ type: "room.exploded", room_id: "r" }), DecodeError);
  assert.throws(() => decodeServerFrame({ type: "room.member_left", room_id: "r" }), /user_id: is missing/);
  assert.throws(() => decodeServerFrame({ type: "room.message", ref: 1, room_id: "r" }), DecodeError);
  assert.throws(() => decodeServerFrame({ type: "ok", data: {} }), /ref/);
  assert.throws(() => decodeServerFrame({ type: "error", error: { code: "nope", message: "" } }), DecodeError);
  assert.throws(() => decodeReply("room.send", { message_id: "m", seq: -1 }), DecodeError);
  assert.throws(() => decodeRequest({ type: "room.join" }), /room_id/);
  assert.throws(() => decodeRequest({ type: "room.fly", ref: 1 }), DecodeError);
  // Unknown extra fields are fine.
  decodeServerFrame({ type: "room.member_left", room_id: "r", user_id: "u", extra: 1 });
});
