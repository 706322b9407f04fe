// The socket client against a real meshi.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  MeshiError,
  type ConnectionState,
  type DisconnectInfo,
  type MeshiClient,
  type Push,
} from "../src/index.js";
import { Proxy, TestServer, newUser, sleep, waitFor, within } from "./server.js";

let server: TestServer;
const clients: MeshiClient[] = [];

before(async () => {
  server = new TestServer();
  await server.start();
});

after(async () => {
  for (const c of clients) c.close();
  await server.dispose();
});

function track(client: MeshiClient): MeshiClient {
  clients.push(client);
  return client;
}

/** Two users who matched, with their conversation. */
async function matchedPair(s: TestServer) {
  const a = await newUser(s, "ann");
  const b = await newUser(s, "bob");
  const card = await a.rest.createCard({ title: "Lunch?", body: "ramen", tags: ["food"] });
  await b.rest.showInterest(card.id);
  const match = await a.rest.match(card.id, b.id);
  return { a, b, conversationId: match.conversation_id, matchId: match.id };
}

test("hello names the user; ping round trips; an error reply rejects with its code", async () => {
  const a = await newUser(server, "hello");
  const client = track(server.client(a.token));
  const hello = await within("connect", client.connect());
  assert.equal(hello.user.id, a.id);
  assert.equal(hello.user.handle, a.handle);
  assert.ok(hello.session_id.length > 0);
  assert.ok(hello.heartbeat_ms > 0);
  assert.equal(client.state, "open");

  const pong = await client.ping();
  assert.ok(!Number.isNaN(Date.parse(pong.server_time)));

  await assert.rejects(client.joinRoom("r_does_not_exist"), (e: unknown) => {
    assert.ok(e instanceof MeshiError);
    assert.equal(e.code, "not_found");
    return true;
  });
  await assert.rejects(
    client.request("room.create", { name: "" }),
    (e: unknown) => e instanceof MeshiError && e.code === "bad_request",
  );
  // The socket is still fine after errors.
  await client.ping();
  client.close();
  assert.equal(client.state, "closed");
  await assert.rejects(client.ping(), /closed/);
});

test("a refused token rejects connect() and asks for a new token", async () => {
  const client = track(server.client("mst_not_a_real_token"));
  const required: number[] = [];
  client.on("tokenRequired", ({ code }) => required.push(code));
  await assert.rejects(within("connect", client.connect()), /4001/);
  assert.deepEqual(required, [4001]);
  assert.equal(client.state, "needs_token");
  client.close();
});

test("room create, join and send reach a second client as pushes", async () => {
  const a = await newUser(server, "host");
  const b = await newUser(server, "guest");
  const ca = track(server.client(a.token));
  const cb = track(server.client(b.token));
  await Promise.all([ca.connect(), cb.connect()]);

  const joined: Push<"room.member_joined">[] = [];
  const aMessages: Push<"room.message">[] = [];
  const bMessages: Push<"room.message">[] = [];
  ca.on("room.member_joined", (f) => joined.push(f));
  ca.on("room.message", (f) => aMessages.push(f));
  cb.on("room.message", (f) => bMessages.push(f));

  const room = await ca.createRoom({ name: "Async office hours", topic: "Pin", capacity: 10 });
  assert.equal(room.kind, "drop_in");
  assert.equal(room.host_id, a.id);

  const listed = await cb.listRooms();
  assert.ok(listed.some((r) => r.id === room.id));

  const reply = await cb.joinRoom(room.id);
  assert.equal(reply.room.id, room.id);
  assert.equal(reply.recovered, false);
  assert.deepEqual(reply.members.map((m) => m.id).sort(), [a.id, b.id].sort());
  await waitFor("member_joined at the host", () => joined.some((f) => f.user.id === b.id));

  const sent = await ca.sendRoomMessage(room.id, "hello room", "cmid-1");
  assert.ok(sent.seq >= 1);
  await waitFor("the message at both", () => aMessages.length === 1 && bMessages.length === 1);
  assert.equal(bMessages[0]!.text, "hello room");
  assert.equal(bMessages[0]!.seq, sent.seq);
  assert.equal(bMessages[0]!.from.id, a.id);
  assert.equal(bMessages[0]!.client_msg_id, "cmid-1");

  // The same client_msg_id again: the first result, nothing delivered twice.
  const again = await ca.sendRoomMessage(room.id, "hello room", "cmid-1");
  assert.deepEqual(again, sent);
  await ca.ping();
  await cb.ping();
  assert.equal(bMessages.length, 1);
  assert.equal(ca.roomSeqs().get(room.id), sent.seq);

  ca.close();
  cb.close();
});

test("a dropped connection reconnects, rejoins by since_seq and catches DMs up: nothing lost, nothing twice", async () => {
  const proxy = new Proxy(() => server.port);
  await proxy.start();
  try {
    const { a, b, conversationId } = await matchedPair(server);
    const ca = track(server.client(a.token, { url: proxy.wsUrl }));
    const cb = track(server.client(b.token));
    await Promise.all([ca.connect(), cb.connect()]);

    const roomTexts: string[] = [];
    const roomSeqs: number[] = [];
    const dmTexts: string[] = [];
    const disconnects: DisconnectInfo[] = [];
    const rejoined: boolean[] = [];
    const caughtUp: string[][] = [];
    let resumed = 0;
    ca.on("room.message", (f) => {
      roomTexts.push(f.text);
      roomSeqs.push(f.seq);
    });
    ca.on("dm.message", (f) => dmTexts.push(f.text));
    ca.on("disconnected", (d) => disconnects.push(d));
    ca.on("roomRejoined", (r) => rejoined.push(r.recovered));
    ca.on("dmCaughtUp", (r) => caughtUp.push(r.messages.map((m) => m.text)));
    ca.on("resumed", () => resumed++);

    const room = await ca.createRoom({ name: "Outage drill" });
    const directory = await ca.watchRooms();
    assert.ok(directory.some((r) => r.id === room.id));
    const rewatched: string[][] = [];
    ca.on("roomsRewatched", (rooms) => rewatched.push(rooms.map((r) => r.id)));
    await cb.joinRoom(room.id);
    await cb.sendRoomMessage(room.id, "m1");
    await cb.sendDm(conversationId, "d1");
    await waitFor("m1 and d1 at ann", () => roomTexts.length === 1 && dmTexts.length === 1);

    proxy.cut();
    await waitFor("ann to notice the outage", () => disconnects.length === 1);
    assert.equal(disconnects[0]!.willReconnect, true);
    assert.ok((disconnects[0]!.delayMs ?? -1) >= 0);

    for (const text of ["m2", "m3", "m4"]) await cb.sendRoomMessage(room.id, text);
    await cb.sendDm(conversationId, "d2");
    await cb.sendDm(conversationId, "d3");
    await sleep(300); // a few failed attempts while the network is down

    proxy.restore();
    await waitFor("ann to resume", () => resumed === 1, 8000);
    assert.equal(ca.state, "open");
    assert.deepEqual(rejoined, [true]);
    assert.deepEqual(roomTexts, ["m1", "m2", "m3", "m4"]);
    assert.deepEqual(dmTexts, ["d1", "d2", "d3"]);
    assert.deepEqual(caughtUp, [["d2", "d3"]]);
    assert.equal(rewatched.length, 1);
    assert.ok(rewatched[0]!.includes(room.id));

    // Live again, still without duplicates.
    await cb.sendRoomMessage(room.id, "m5");
    await cb.sendDm(conversationId, "d4");
    await waitFor("m5 and d4 at ann", () => roomTexts.length === 5 && dmTexts.length === 4);
    await ca.ping();
    assert.deepEqual(roomTexts, ["m1", "m2", "m3", "m4", "m5"]);
    assert.deepEqual(dmTexts, ["d1", "d2", "d3", "d4"]);
    for (let i = 1; i < roomSeqs.length; i++) assert.ok(roomSeqs[i]! > roomSeqs[i - 1]!, "seqs ascend");
    assert.equal(ca.conversationSeqs().get(conversationId), 4);

    // A send made while the socket is down waits and goes out after the resume.
    proxy.cut();
    await waitFor("the second outage", () => disconnects.length >= 2);
    const pendingSend = ca.sendRoomMessage(room.id, "m6 from ann");
    await sleep(200);
    proxy.restore();
    const sent = await within("the queued send", pendingSend, 8000);
    await waitFor("m6 at ann", () => roomTexts.includes("m6 from ann"));
    assert.equal(roomSeqs[roomSeqs.length - 1], sent.seq);
    ca.close();
    cb.close();
  } finally {
    await proxy.close();
  }
});

test("logging out over REST closes with 4010: no reconnect until a new token, then rejoin", async () => {
  const a = await newUser(server, "leaver");
  const b = await newUser(server, "stayer");
  const ca = track(server.client(a.token));
  const cb = track(server.client(b.token));
  await Promise.all([ca.connect(), cb.connect()]);
  const states: ConnectionState[] = [];
  const texts: string[] = [];
  const disconnects: DisconnectInfo[] = [];
  ca.on("state", (s) => states.push(s));
  ca.on("room.message", (f) => texts.push(f.text));
  ca.on("disconnected", (d) => disconnects.push(d));
  let tokenRequired = 0;
  ca.on("tokenRequired", () => tokenRequired++);

  const room = await cb.createRoom({ name: "Stay a while" });
  await ca.joinRoom(room.id);
  await cb.sendRoomMessage(room.id, "before");
  await waitFor("before", () => texts.length === 1);

  await a.rest.logout();
  await waitFor("the 4010 close", () => disconnects.length === 1);
  assert.equal(disconnects[0]!.code, 4010);
  assert.equal(disconnects[0]!.willReconnect, false);
  assert.equal(tokenRequired, 1);
  assert.equal(ca.state, "needs_token");

  await cb.sendRoomMessage(room.id, "while out");
  await sleep(1200);
  assert.ok(!states.includes("connecting"), `no reconnect without a token: ${states.join(",")}`);

  const { token } = await a.rest.login({ handle: a.handle, password: "correct horse battery" });
  let resumed = false;
  ca.on("resumed", () => (resumed = true));
  ca.setToken(token);
  await waitFor("the resume with the new token", () => resumed, 5000);
  assert.deepEqual(texts, ["before", "while out"]);
  ca.close();
  cb.close();
});

test("auth.refresh swaps the token on the live socket", async () => {
  const a = await newUser(server, "refresher");
  const client = track(server.client(a.token));
  await client.connect();
  const { token } = await a.rest.login({ handle: a.handle, password: "correct horse battery" });
  await client.refreshToken(token);
  await assert.rejects(client.refreshToken("mst_bogus"), (e: unknown) => e instanceof MeshiError);
  await client.ping();
  client.close();
});

test("presence, typing, read marks, edits and deletes", async () => {
  const { a, b, conversationId } = await matchedPair(server);
  const ca = track(server.client(a.token));
  const cb = track(server.client(b.token));
  await Promise.all([ca.connect(), cb.connect()]);
  const pushes: Push[] = [];
  cb.on("push", (f) => pushes.push(f));

  const presence = await ca.queryPresence([b.id]);
  assert.deepEqual(presence.map((p) => [p.user_id, p.status]), [[b.id, "online"]]);

  const sent = await ca.sendDm(conversationId, "first draft");
  await ca.editDm(conversationId, sent.message_id, "final");
  ca.dmTyping(conversationId);
  await cb.markDmRead(conversationId, sent.seq);
  await ca.deleteDm(conversationId, sent.message_id);
  await waitFor("the dm pushes at bob", () =>
    ["dm.message", "dm.message_edited", "dm.typing", "dm.message_deleted"].every((t) => pushes.some((p) => p.type === t)),
  );
  const history = await cb.dmHistory({ conversation_id: conversationId });
  assert.equal(history.length, 1);
  assert.equal(history[0]!.deleted, true);
  ca.close();
  cb.close();
});

test("a reconnect push's retry_after_ms is honoured; after a restart lost room history is surfaced", async () => {
  const s = new TestServer({ env: { MESHI_RECONNECT_AFTER_MS: "1500" } });
  await s.start();
  try {
    const a = await newUser(s, "drainee");
    const community = await a.rest.createCommunity({ name: `Rustaceans ${Date.now()}`, description: "crabs" });
    const client = track(s.client(a.token));
    await client.connect();
    const reconnects: Push<"reconnect">[] = [];
    const disconnects: (DisconnectInfo & { at: number })[] = [];
    const connecting: number[] = [];
    const resets: string[] = [];
    const rejoined: boolean[] = [];
    const failed: string[] = [];
    let resumed = false;
    client.on("reconnect", (f) => reconnects.push(f));
    client.on("disconnected", (d) => disconnects.push({ ...d, at: Date.now() }));
    client.on("state", (st) => st === "connecting" && connecting.push(Date.now()));
    client.on("roomReset", (r) => resets.push(r.roomId));
    client.on("roomRejoined", (r) => rejoined.push(r.recovered));
    client.on("roomRejoinFailed", (r) => failed.push(r.roomId));
    client.on("resumed", () => (resumed = true));

    await client.joinRoom(community.room_id);
    await client.sendRoomMessage(community.room_id, "one");
    await client.sendRoomMessage(community.room_id, "two");
    await waitFor("both messages", () => client.roomSeqs().get(community.room_id) === 2);

    const stopped = s.terminate();
    await waitFor("the reconnect push", () => reconnects.length === 1);
    assert.equal(reconnects[0]!.retry_after_ms, 1500);
    await waitFor("the 1012 close", () => disconnects.length === 1);
    assert.equal(disconnects[0]!.code, 1012);
    assert.equal(disconnects[0]!.willReconnect, true);
    assert.ok(disconnects[0]!.delayMs! >= 1500 && disconnects[0]!.delayMs! <= 1700, `delay ${disconnects[0]!.delayMs}`);
    await within("the server to stop", stopped, 10_000);
    await s.start();
    await waitFor("the resume after the restart", () => resumed, 10_000);
    assert.ok(connecting.length >= 1);
    assert.ok(connecting[0]! - disconnects[0]!.at >= 1450, `waited ${connecting[0]! - disconnects[0]!.at} ms`);
    // The room's history lived in the old process: the rejoin cannot
    // recover it, and the client says so.
    assert.deepEqual(failed, []);
    assert.deepEqual(rejoined, [false]);
    assert.deepEqual(resets, [community.room_id]);
    client.close();
  } finally {
    await s.dispose();
  }
});
