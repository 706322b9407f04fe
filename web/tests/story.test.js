// The web client end to end in headless Chromium (Debian's package, never
// a downloaded browser) against a real meshi binary: two people match and
// chat, meet in a room, one drops off and comes back with nothing lost,
// and a moderator resolves a report.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchChromium, startServer } from './server.js';

const SHOTS = path.resolve(import.meta.dirname, '..', '..', 'target', 'web-screenshots');
const WAIT_MS = 10000;
mkdirSync(SHOTS, { recursive: true });

let server;
let browser;
const problems = [];

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.stop();
});

async function person(name, viewport = { width: 1100, height: 800 }) {
  const context = await browser.newContext({ viewport, baseURL: server.base });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.setDefaultNavigationTimeout(WAIT_MS);
  page.on('pageerror', (err) => problems.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content.Security.Policy|Refused to/i.test(msg.text())) problems.push(`${name}: ${msg.text()}`);
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.error(`Refused to load: CSP ${e.violatedDirective} ${e.blockedURI}`));
  });
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function signUp(page, handle, name) {
  await page.goto('/');
  const form = page.getByRole('form', { name: 'Sign up' });
  await form.getByLabel('Handle').fill(handle);
  await form.getByLabel('Display name').fill(name);
  await form.getByLabel('Password').fill('password123');
  await form.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('heading', { name: 'Cards', level: 1 }).waitFor();
}

async function logIn(page, handle, password) {
  await page.goto('/');
  const form = page.getByRole('form', { name: 'Log in' });
  await form.getByLabel('Handle').fill(handle);
  await form.getByLabel('Password').fill(password);
  await form.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Cards', level: 1 }).waitFor();
}

async function send(page, text) {
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill(text);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
}

const message = (page, text) => page.locator('li.msg', { hasText: text });

async function countOf(page, text) {
  return page.locator('li.msg .text', { hasText: new RegExp(`^${text}$`) }).count();
}

let alice;
let bob;
let roomUrl;

test('the page loads under its CSP and people sign up', { timeout: 60000 }, async () => {
  alice = await person('alice');
  bob = await person('bob', { width: 390, height: 844 });
  await alice.goto('/');
  await alice.getByRole('heading', { name: 'Welcome to meshi' }).waitFor();
  await shot(alice, '01-sign-in');
  await signUp(alice, 'alice', 'Alice');
  await signUp(bob, 'bob', 'Bob');
  assert.deepEqual(problems, []);
});

test('a card, interest, a match, then a chat with unread counts, read receipts, typing and presence', { timeout: 90000 }, async () => {
  await alice.getByText('Post a card').click();
  const post = alice.getByRole('form', { name: 'Post a card' });
  await post.getByLabel('Title').fill('Ramen and Rust');
  await post.getByLabel('What to talk about').fill('Async cancellation over noodles');
  await post.getByLabel('Tags').fill('rust, ramen');
  await post.getByRole('button', { name: 'Post card' }).click();
  await alice.locator('li.item', { hasText: 'Ramen and Rust' }).waitFor();

  await bob.reload();
  await bob.getByRole('button', { name: 'Show cards tagged ramen' }).click();
  const card = bob.locator('li.item', { hasText: 'Ramen and Rust' });
  await card.getByRole('button', { name: 'Interested' }).click();
  await card.getByRole('button', { name: /withdraw/ }).waitFor();
  await shot(bob, '02-phone-cards');

  await alice.locator('li.item', { hasText: 'Ramen and Rust' }).getByRole('link', { name: 'Who is interested' }).click();
  await alice.getByRole('button', { name: 'Match with Bob' }).click();
  await alice.waitForURL(/#\/chats\/.+/);
  await alice.locator('.presence', { hasText: 'online' }).waitFor();

  await bob.goto('/#/chats');
  await bob.locator('a.row', { hasText: 'Alice' }).waitFor();
  await send(alice, 'hello bob');
  await message(alice, 'hello bob').waitFor();
  // Bob, on the list, sees the unread count.
  await bob.locator('a.row', { hasText: 'Alice' }).locator('.badge', { hasText: '1' }).waitFor();
  await bob.locator('#unread-total', { hasText: '1' }).waitFor();
  await bob.locator('a.row', { hasText: 'Alice' }).click();
  await message(bob, 'hello bob').waitFor();
  // Bob read it: Alice sees the receipt.
  await message(alice, 'hello bob').locator('.receipt').waitFor();
  await bob.locator('#unread-total').waitFor({ state: 'hidden' });

  await bob.getByRole('textbox', { name: 'Message', exact: true }).pressSequentially('hi al', { delay: 30 });
  await alice.locator('.typing', { hasText: 'Bob is typing' }).waitFor();
  await bob.getByRole('textbox', { name: 'Message', exact: true }).fill('hi alice, Thursday?');
  await bob.getByRole('button', { name: 'Send', exact: true }).click();
  await message(alice, 'hi alice, Thursday?').waitFor();
  await alice.locator('.typing').filter({ hasText: /^$/ }).waitFor();
  // Bob rewrites his message; Alice sees the new text.
  const mine = message(bob, 'hi alice, Thursday?');
  await mine.getByText('Edit', { exact: true }).click();
  await mine.getByLabel('New text').fill('hi alice, Thursday? Or Friday');
  await mine.getByRole('button', { name: 'Save' }).click();
  await message(alice, 'Or Friday').getByText('(edited)').waitFor();
  await shot(alice, '03-chat');
  await shot(bob, '04-phone-chat');
  assert.deepEqual(problems, []);
});

test('a room with its member list, and a dropped connection recovered with nothing lost', { timeout: 90000 }, async () => {
  await alice.goto('/#/rooms');
  await alice.getByText('Open a room').click();
  const create = alice.getByRole('form', { name: 'Open a room' });
  await create.getByLabel('Name').fill('lunch talk');
  await create.getByLabel('Topic').fill('ramen near the station');
  await create.getByRole('button', { name: 'Open room' }).click();
  await alice.waitForURL(/#\/rooms\/.+/);
  roomUrl = new URL(alice.url()).hash;

  await bob.goto('/#/rooms');
  // The directory is live: the room is listed from rooms.watch.
  await bob.locator('li.item', { hasText: 'lunch talk' }).click();
  await bob.waitForURL(/#\/rooms\/.+/);
  await bob.locator('.members li', { hasText: 'Alice' }).waitFor();
  await alice.locator('.members li', { hasText: 'Bob' }).waitFor();

  await send(alice, 'anyone for ramen?');
  await message(bob, 'anyone for ramen?').waitFor();
  await bob.getByRole('textbox', { name: 'Message', exact: true }).pressSequentially('me', { delay: 30 });
  await alice.locator('.typing', { hasText: 'Bob typing' }).waitFor();
  await bob.getByRole('textbox', { name: 'Message', exact: true }).fill('');

  // Bob's connection drops and stays away for a few seconds.
  await bob.evaluate(() => window.meshi.dropSocket(4000));
  await bob.locator('#conn', { hasText: /reconnect/i }).waitFor();
  await alice.locator('.members li', { hasText: 'Bob' }).waitFor({ state: 'detached' });
  for (const text of ['missed one', 'missed two', 'missed three']) {
    await send(alice, text);
    await message(alice, text).waitFor();
  }
  // Bob writes while offline: sent once he is back, exactly once.
  await send(bob, 'written offline');
  await shot(bob, '05-phone-room-offline');

  await message(bob, 'missed three').waitFor({ timeout: 20000 });
  await message(bob, 'written offline').waitFor({ timeout: 20000 });
  await message(alice, 'written offline').waitFor();
  await alice.locator('.members li', { hasText: 'Bob' }).waitFor();
  await bob.locator('#conn').waitFor({ state: 'hidden' });
  for (const text of ['anyone for ramen\\?', 'missed one', 'missed two', 'missed three', 'written offline']) {
    assert.equal(await countOf(bob, text), 1, `Bob sees "${text}" once`);
    assert.equal(await countOf(alice, text), 1, `Alice sees "${text}" once`);
  }
  const seqs = await bob.locator('li.msg').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in seq order');
  assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
  assert.equal(await bob.locator('.notice', { hasText: 'missed' }).isVisible(), false, 'nothing missed');

  // The author edits one message and deletes another; Bob sees both.
  const edited = message(alice, 'missed two');
  await edited.getByText('Edit', { exact: true }).click();
  await edited.getByLabel('New text').fill('missed two, edited');
  await edited.getByRole('button', { name: 'Save' }).click();
  await message(bob, 'missed two, edited').getByText('(edited)').waitFor();
  await message(alice, 'missed one').getByRole('button', { name: 'Delete this message' }).click();
  await bob.locator('li.msg .text', { hasText: 'message deleted' }).waitFor();
  assert.equal(await countOf(bob, 'missed one'), 0);
  await shot(alice, '06-room');
  await shot(bob, '07-phone-room');
  assert.deepEqual(problems, []);
});

test('a report from the room is resolved by a moderator', { timeout: 90000 }, async () => {
  const target = message(bob, 'anyone for ramen?');
  await target.getByText('Report', { exact: true }).click();
  await target.getByLabel('Reason').fill('spam about ramen');
  await target.getByRole('button', { name: 'Send report' }).click();
  await target.getByText('Reported', { exact: true }).waitFor();

  // A moderator, made the operator's way: an admin from the command line
  // gives the role.
  const registered = await server.call('POST', '/auth/register', null, { handle: 'mod1', password: 'password123', display_name: 'Mo' });
  await server.call('PUT', `/admin/users/${registered.user.id}/role`, await server.adminToken(), { role: 'moderator' });
  const mod = await person('mod');
  await logIn(mod, 'mod1', 'password123');
  await mod.getByRole('link', { name: 'Moderation' }).click();
  const report = mod.locator('li.item', { hasText: 'spam about ramen' });
  await report.waitFor();
  await report.getByLabel('Action').selectOption('message_deleted');
  await report.getByLabel('Note').fill('off topic');
  await shot(mod, '08-moderation');
  await report.getByRole('button', { name: 'Resolve' }).click();
  await mod.getByText('No open reports.').waitFor();

  // The message is gone for everyone in the room, and the reporter is told.
  for (const page of [alice, bob]) {
    await page.locator('li.msg .text', { hasText: /^anyone for ramen\?$/ }).waitFor({ state: 'detached' });
    assert.equal(await page.locator('li.msg .text', { hasText: /^message deleted$/ }).count(), 2);
  }
  await bob.locator('#notice-count').waitFor();
  await bob.goto('/#/notifications');
  await bob.getByText('Your report was resolved').waitFor();
  await shot(bob, '09-phone-notifications');
  assert.ok(roomUrl);
  assert.deepEqual(problems, []);
});

test('a server restart: the chat reconnects and a message written meanwhile arrives once', { timeout: 90000 }, async () => {
  await alice.goto('/#/chats');
  await alice.locator('a.row', { hasText: 'Bob' }).click();
  await message(alice, 'Or Friday').waitFor();
  const url = new URL(alice.url()).hash;
  await bob.goto(`/${url}`);
  await message(bob, 'hello bob').waitFor();

  await server.restart(1500, async () => {
    // Down: the page says so and keeps what Alice writes.
    await alice.locator('#conn', { hasText: /reconnect/i }).waitFor();
    await alice.getByRole('textbox', { name: 'Message', exact: true }).fill('written while the server was down');
    await alice.getByRole('button', { name: 'Send', exact: true }).click();
  });
  await message(alice, 'written while the server was down').waitFor({ timeout: 30000 });
  await message(bob, 'written while the server was down').waitFor({ timeout: 30000 });
  await alice.locator('#conn').waitFor({ state: 'hidden', timeout: 30000 });
  await bob.locator('#conn').waitFor({ state: 'hidden', timeout: 30000 });
  await bob.getByRole('textbox', { name: 'Message', exact: true }).fill('and after it');
  await bob.getByRole('button', { name: 'Send', exact: true }).click();
  await message(alice, 'and after it').waitFor();
  for (const page of [alice, bob]) {
    assert.equal(await countOf(page, 'written while the server was down'), 1);
    assert.equal(await countOf(page, 'and after it'), 1);
  }
  assert.deepEqual(problems, []);
});
