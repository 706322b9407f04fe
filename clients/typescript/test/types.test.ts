// Compile-time checks of the protocol types (this file fails `tsc` when they
// break), with a trivial run-time part.

import assert from "node:assert/strict";
import { test } from "node:test";

import type { Push, ReplyData, Request, ServerFrame } from "../src/index.js";

test("requests, replies and pushes are typed by their type", () => {
  const ping: Request<"ping"> = { type: "ping", ref: 1 };
  const join: Request = { type: "room.join", ref: "j", room_id: "r", since_seq: 4 };
  // @ts-expect-error room.join needs room_id
  const broken: Request<"room.join"> = { type: "room.join" };
  const joined: ReplyData["room.join"]["recovered"] = true;
  const frame = { type: "rooms.changed", room_id: "r", closed: true } as ServerFrame;
  if (frame.type === "rooms.changed") {
    const closed: true | undefined = frame.closed;
    void closed;
  }
  const push: Push<"reconnect"> = { type: "reconnect", reason: "drain", retry_after_ms: 1000 };
  assert.equal(push.retry_after_ms, 1000);
  void [ping, join, broken, joined];
});
