// The REST helpers against a real meshi.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { MeshiError, type DisconnectInfo } from "../src/index.js";
import { TestServer, newUser, waitFor, within } from "./server.js";

let server: TestServer;

before(async () => {
  server = new TestServer();
  await server.start();
});

after(async () => {
  await server.dispose();
});

const PASSWORD = "correct horse battery";

const isCode = (code: string, status: number) => (e: unknown) =>
  e instanceof MeshiError && e.code === code && e.status === status;

test("accounts: register, login, me, profile, sessions, password, export, errors", async () => {
  const a = await newUser(server, "acct");
  const me = await a.rest.me();
  assert.equal(me.id, a.id);
  assert.equal(me.role, "member");
  const patched = await a.rest.updateMe({ display_name: "Ann Account", bio: "hi", tags: ["rust"] });
  assert.equal(patched.display_name, "Ann Account");
  assert.deepEqual(patched.tags, ["rust"]);
  assert.equal((await server.rest(a.token).user(a.id)).handle, a.handle);

  await assert.rejects(a.rest.register({ handle: a.handle, password: PASSWORD, display_name: "x" }), isCode("conflict", 409));
  await assert.rejects(server.rest().login({ handle: a.handle, password: "wrong password" }), isCode("unauthenticated", 401));
  await assert.rejects(server.rest().me(), isCode("unauthenticated", 401));
  await assert.rejects(a.rest.user("999999999"), isCode("not_found", 404));

  const second = server.rest();
  await second.login({ handle: a.handle, password: PASSWORD });
  const sessions = await a.rest.sessions();
  assert.equal(sessions.items.length, 2);
  assert.equal(sessions.items.filter((s) => s.current).length, 1);
  const other = sessions.items.find((s) => !s.current)!;
  await a.rest.endSession(other.id);
  await assert.rejects(second.me(), isCode("unauthenticated", 401));

  await a.rest.changePassword({ current_password: PASSWORD, new_password: "a new passphrase" });
  await assert.rejects(
    a.rest.changePassword({ current_password: "not it at all", new_password: "whatever123" }),
    isCode("forbidden", 403),
  );
  await server.rest().login({ handle: a.handle, password: "a new passphrase" });
  await a.rest.endOtherSessions();
  assert.equal((await a.rest.sessions()).items.length, 1);

  const exported = await a.rest.exportMe();
  assert.ok("profile" in exported && Array.isArray(exported.sessions));

  const spec = await server.rest().openapi();
  assert.ok(typeof spec.paths === "object");

  await a.rest.logout();
  assert.equal(a.rest.token, undefined);

  const doomed = await newUser(server, "doomed");
  await assert.rejects(doomed.rest.deleteMe({ password: "wrong one!" }), isCode("forbidden", 403));
  await doomed.rest.deleteMe({ password: PASSWORD });
  await assert.rejects(doomed.rest.me(), isCode("unauthenticated", 401));
});

test("cards, interest, matches, conversations, messages, unmatch, notifications", async () => {
  const owner = await newUser(server, "owner");
  const fan = await newUser(server, "fan");
  const card = await owner.rest.createCard({ title: "Async Rust chat", body: "cancellation", tags: ["rust"] });
  assert.equal(card.owner_id, owner.id);
  assert.equal((await fan.rest.card(card.id)).title, "Async Rust chat");
  const listed = await fan.rest.cards({ owner_id: owner.id });
  assert.deepEqual(listed.items.map((c) => c.id), [card.id]);
  const updated = await owner.rest.updateCard(card.id, { body: "cancellation safety" });
  assert.equal(updated.body, "cancellation safety");
  await assert.rejects(fan.rest.updateCard(card.id, { body: "mine now" }), isCode("forbidden", 403));

  await fan.rest.showInterest(card.id);
  await fan.rest.showInterest(card.id); // idempotent
  const interests = await owner.rest.interests(card.id);
  assert.deepEqual(interests.items.map((i) => i.user.id), [fan.id]);

  const match = await owner.rest.match(card.id, fan.id);
  assert.equal(match.user.id, fan.id);
  assert.equal((await fan.rest.matches()).items[0]!.conversation_id, match.conversation_id);

  const notes = await owner.rest.notifications();
  assert.ok(notes.items.some((n) => n.kind === "interest_received"), notes.items.map((n) => n.kind).join());
  const fanNotes = await fan.rest.notifications({ unread: true });
  assert.ok(fanNotes.items.some((n) => n.kind === "matched"));
  await fan.rest.markNotificationsRead(fanNotes.items[0]!.id);
  assert.equal((await fan.rest.notifications({ unread: true })).items.length, 0);

  // A DM over the socket, read back over REST.
  const client = server.client(owner.token);
  await within("connect", client.connect());
  await client.sendDm(match.conversation_id, "hello over the socket");
  client.close();
  const conversations = await fan.rest.conversations();
  const item = conversations.items.find((c) => c.id === match.conversation_id)!;
  assert.equal(item.other_user.id, owner.id);
  assert.equal(item.unread_count, 1);
  assert.equal(item.last_message?.text, "hello over the socket");
  const messages = await fan.rest.messages(match.conversation_id, { after_seq: 0, limit: 10 });
  assert.deepEqual(messages.map((m) => m.text), ["hello over the socket"]);

  await fan.rest.withdrawInterest(card.id);
  await fan.rest.unmatch(match.id);
  assert.equal((await fan.rest.conversations()).items.length, 0);
  await owner.rest.deleteCard(card.id);
  await assert.rejects(fan.rest.card(card.id), isCode("not_found", 404));
});

test("events, rsvp, attendees; communities and members; blocks; rooms; reports", async () => {
  const host = await newUser(server, "host");
  const guest = await newUser(server, "guest");
  const late = await newUser(server, "late");
  const startsAt = new Date(Date.now() + 86_400_000).toISOString();
  const event = await host.rest.createEvent({ title: "Ramen", description: "after the meetup", starts_at: startsAt, venue: "Shibuya", capacity: 1, tags: ["food"] });
  assert.equal(event.host_id, host.id);
  assert.equal((await guest.rest.rsvp(event.id)).status, "going");
  const waiting = await late.rest.rsvp(event.id);
  assert.equal(waiting.status, "waitlisted");
  assert.equal(waiting.waitlist_position, 1);
  const detail = await guest.rest.event(event.id);
  assert.equal(detail.my_rsvp, "going");
  assert.equal(detail.going_count, 1);
  assert.equal(detail.waitlist_count, 1);
  const attendees = await host.rest.attendees(event.id);
  assert.deepEqual(attendees.items.map((x) => [x.user.id, x.status]), [[guest.id, "going"], [late.id, "waitlisted"]]);
  await guest.rest.cancelRsvp(event.id);
  assert.equal((await late.rest.event(event.id)).my_rsvp, "going");
  assert.ok((await host.rest.events({ tag: "food" })).items.some((e) => e.id === event.id));
  assert.equal((await host.rest.updateEvent(event.id, { venue: "Ichiran" })).venue, "Ichiran");
  await host.rest.cancelEvent(event.id);

  const community = await host.rest.createCommunity({ name: `Crabs ${process.pid} ${Date.now()}`, description: "rustaceans", tags: ["rust"] });
  await guest.rest.joinCommunity(community.id);
  await guest.rest.joinCommunity(community.id); // idempotent
  assert.equal((await guest.rest.community(community.id)).is_member, true);
  const members = await guest.rest.members(community.id);
  assert.ok(members.items.some((m) => m.user.id === guest.id));
  assert.ok((await guest.rest.communities({ q: "Crabs" })).items.some((c) => c.id === community.id));
  await guest.rest.leaveCommunity(community.id);
  await assert.rejects(guest.rest.members(community.id), isCode("forbidden", 403));

  await host.rest.block(late.id);
  assert.deepEqual((await host.rest.blocks()).items.map((b) => b.user.id), [late.id]);
  await host.rest.unblock(late.id);
  assert.equal((await host.rest.blocks()).items.length, 0);

  const client = server.client(host.token);
  await within("connect", client.connect());
  const room = await client.createRoom({ name: "Listed" });
  assert.ok((await guest.rest.rooms()).items.some((r) => r.id === room.id));
  client.close();

  const report = await guest.rest.report({ kind: "user", target_id: late.id, reason: "spam" });
  assert.equal(report.status, "open");
  assert.equal(report.reporter.id, guest.id);
});

test("admin routes: role, users, suspend, rooms, reports, audit", async () => {
  const admin = await newUser(server, "admin");
  const member = await newUser(server, "member");
  await assert.rejects(member.rest.audit(), isCode("forbidden", 403));
  server.promote(admin.handle);
  assert.equal((await admin.rest.me()).role, "admin");

  const mod = await newUser(server, "mod");
  await admin.rest.setRole(mod.id, "moderator");
  assert.equal((await mod.rest.me()).role, "moderator");
  const users = await mod.rest.adminUsers({ role: "moderator" });
  assert.deepEqual(users.items.map((u) => u.id), [mod.id]);

  // Suspending ends the member's sessions: the socket closes with 4010.
  const socket = server.client(member.token);
  await within("connect", socket.connect());
  const closes: DisconnectInfo[] = [];
  socket.on("disconnected", (d) => closes.push(d));
  await mod.rest.suspend(member.id, { reason: "cooling off", until: new Date(Date.now() + 3_600_000).toISOString() });
  await waitFor("the 4010 close", () => closes.length === 1);
  assert.equal(closes[0]!.code, 4010);
  assert.equal(socket.state, "needs_token");
  socket.close();
  assert.ok((await mod.rest.adminUsers({ suspended: true })).items.some((u) => u.id === member.id));
  await mod.rest.unsuspend(member.id);

  const host = server.client(admin.token);
  await within("connect", host.connect());
  const closed: string[] = [];
  host.on("room.closed", (f) => closed.push(f.reason));
  const room = await host.createRoom({ name: "Soon closed" });
  await mod.rest.adminCloseRoom(room.id);
  await waitFor("room.closed", () => closed.length === 1);
  assert.deepEqual(closed, ["moderator"]);
  host.close();

  const reporter = await newUser(server, "reporter");
  const filed = await reporter.rest.report({ kind: "user", target_id: member.id, reason: "rude" });
  const queue = await mod.rest.reports({ status: "open" });
  assert.ok(queue.items.some((r) => r.id === filed.id));
  const resolved = await mod.rest.resolveReport(filed.id, { action: "dismissed", note: "fine" });
  assert.equal(resolved.status, "resolved");
  assert.equal(resolved.action, "dismissed");

  const audit = await admin.rest.audit({ limit: 50 });
  assert.ok(audit.items.length > 0);
  assert.ok(audit.items.every((e) => typeof e.action === "string"));
});
