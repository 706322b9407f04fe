// The socket client against a scripted fake WebSocket: timeouts, backoff,
// dedupe and unknown frames, without a server.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  MeshiClient,
  MeshiTimeoutError,
  type DisconnectInfo,
  type WebSocketConstructor,
  type WebSocketLike,
} from "../src/index.js";
import { waitFor } from "./server.js";

type Script = (socket: FakeSocket, frame: Record<string, any>) => void;

class FakeSocket implements WebSocketLike {
  static sockets: FakeSocket[] = [];
  static script: Script = () => {};
  static refuse = false;
  readyState = 0;
  onopen: ((event: any) => void) | null = null;
  onmessage: ((event: any) => void) | null = null;
  onclose: ((event: any) => void) | null = null;
  onerror: ((event: any) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeSocket.sockets.push(this);
    setTimeout(() => {
      if (FakeSocket.refuse) return this.serverClose(1006, "");
      this.readyState = 1;
      this.onopen?.({});
    }, 1);
  }

  send(data: string): void {
    const frame = JSON.parse(data);
    setTimeout(() => FakeSocket.script(this, frame), 1);
  }

  push(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  serverClose(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  close(): void {
    this.serverClose(1005, "");
  }
}

const Fake = FakeSocket as unknown as WebSocketConstructor;
const user = { id: "u1", handle: "ann", display_name: "Ann" };

function helloOnly(socket: FakeSocket, frame: Record<string, any>): void {
  if (frame.type === "hello") {
    socket.push({ type: "ok", ref: frame.ref, data: { user, session_id: "s1", heartbeat_ms: 30000 } });
  }
}

test("a request without a reply rejects with a timeout", async () => {
  FakeSocket.script = helloOnly;
  FakeSocket.refuse = false;
  const client = new MeshiClient({ url: "ws://fake/ws", token: "t", WebSocket: Fake });
  await client.connect();
  assert.deepEqual(FakeSocket.sockets.at(-1)!.protocols, ["meshi.v1"]);
  const started = Date.now();
  await assert.rejects(client.ping({ timeoutMs: 80 }), (e: unknown) => e instanceof MeshiTimeoutError && e.op === "ping");
  assert.ok(Date.now() - started >= 75);
  client.close();
});

test("backoff grows exponentially with jitter up to its cap, and resets after a hello", async () => {
  FakeSocket.script = helloOnly;
  FakeSocket.refuse = true;
  const client = new MeshiClient({
    url: "ws://fake/ws",
    token: "t",
    WebSocket: Fake,
    backoff: { initialMs: 10, maxMs: 80 },
    random: () => 1 - Number.EPSILON,
  });
  const delays: number[] = [];
  client.on("disconnected", (d: DisconnectInfo) => delays.push(d.delayMs!));
  const connected = client.connect();
  await waitFor("six attempts", () => delays.length >= 6, 3000);
  // random() ~ 1: each delay is the full base: 10, 20, 40, 80, 80, ...
  assert.deepEqual(delays.slice(0, 6), [10, 20, 40, 80, 80, 80]);
  FakeSocket.refuse = false;
  await connected;
  FakeSocket.sockets.at(-1)!.serverClose(1006, "");
  await waitFor("the next delay", () => delays.length >= 7);
  assert.equal(delays.at(-1), 10, "a successful hello resets the backoff");
  client.close();
});

test("jitter keeps delays between half the base and the base", async () => {
  FakeSocket.script = helloOnly;
  FakeSocket.refuse = true;
  const client = new MeshiClient({
    url: "ws://fake/ws",
    token: "t",
    WebSocket: Fake,
    backoff: { initialMs: 40, maxMs: 40 },
    random: () => 0,
  });
  const delays: number[] = [];
  client.on("disconnected", (d: DisconnectInfo) => delays.push(d.delayMs!));
  void client.connect().catch(() => {});
  await waitFor("two attempts", () => delays.length >= 2);
  assert.deepEqual(delays.slice(0, 2), [20, 20]);
  client.close();
  FakeSocket.refuse = false;
});

test("terminal close codes stop reconnecting; a 4010 waits for setToken", async () => {
  for (const code of [1008, 1009, 4008]) {
    FakeSocket.script = (socket, frame) => {
      helloOnly(socket, frame);
      if (frame.type === "hello") setTimeout(() => socket.serverClose(code, "bye"), 5);
    };
    const client = new MeshiClient({ url: "ws://fake/ws", token: "t", WebSocket: Fake });
    const seen: DisconnectInfo[] = [];
    client.on("disconnected", (d) => seen.push(d));
    await client.connect();
    await waitFor(`the ${code} close`, () => seen.length === 1);
    assert.equal(seen[0]!.willReconnect, false);
    assert.equal(client.state, "closed");
  }
  FakeSocket.script = (socket, frame) => {
    helloOnly(socket, frame);
    if (frame.type === "hello" && frame.token === "old") setTimeout(() => socket.serverClose(4010, "token ended"), 5);
  };
  const client = new MeshiClient({ url: "ws://fake/ws", token: "old", WebSocket: Fake });
  await client.connect();
  await waitFor("needs_token", () => client.state === "needs_token");
  const before = FakeSocket.sockets.length;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(FakeSocket.sockets.length, before, "no new socket without a token");
  client.setToken("new");
  await waitFor("open again", () => client.state === "open");
  client.close();
});

test("room messages are deduplicated by seq; unknown frame types are ignored", async () => {
  FakeSocket.script = (socket, frame) => {
    if (frame.type === "hello") return helloOnly(socket, frame);
    if (frame.type === "room.join") {
      socket.push({
        type: "ok",
        ref: frame.ref,
        data: {
          room: { id: "r1", kind: "drop_in", name: "r", topic: null, capacity: 5, member_count: 1, host_id: null, created_at: "2025-01-01T00:00:00Z" },
          members: [user],
          messages: [{ room_id: "r1", seq: 3, message_id: "m3", from: user, text: "three", sent_at: "2025-01-01T00:00:00Z" }],
          last_seq: 3,
          recovered: false,
        },
      });
      const message = (seq: number) => ({ type: "room.message", room_id: "r1", seq, message_id: `m${seq}`, from: user, text: `#${seq}`, sent_at: "2025-01-01T00:00:00Z" });
      socket.push(message(3));
      socket.push({ type: "room.future_thing", room_id: "r1" });
      socket.push(message(4));
      socket.push(message(4));
      socket.push(message(5));
    }
  };
  const client = new MeshiClient({ url: "ws://fake/ws", token: "t", WebSocket: Fake });
  const seqs: number[] = [];
  const unknown: string[] = [];
  client.on("room.message", (f) => seqs.push(f.seq));
  client.on("unknownFrame", (f) => unknown.push(String(f.type)));
  await client.connect();
  await client.joinRoom("r1");
  await waitFor("the pushes", () => seqs.length >= 2);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(seqs, [4, 5]);
  assert.deepEqual(unknown, ["room.future_thing"]);
  assert.equal(client.roomSeqs().get("r1"), 5);
  client.close();
});
