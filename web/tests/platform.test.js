// The rest of the platform in the browser: single sign-on with a pasted
// JWT, an event with RSVP, the waitlist, the host's attendee list and the
// event room, a community and its room, and blocking.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchChromium, startServer } from './server.js';

const SHOTS = path.resolve(import.meta.dirname, '..', '..', 'target', 'web-screenshots');
const SECRET = 'a test secret that is at least thirty-two bytes long';
const WAIT_MS = 10000;
mkdirSync(SHOTS, { recursive: true });

let server;
let browser;
const problems = [];

before(async () => {
  server = await startServer({ MESHI_JWT_SECRET: SECRET });
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.stop();
});

function jwt(claims) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

async function person(name, viewport = { width: 1000, height: 800 }) {
  const context = await browser.newContext({ viewport, baseURL: server.base });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.setDefaultNavigationTimeout(WAIT_MS);
  page.on('pageerror', (err) => problems.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content.Security.Policy|Refused to/i.test(msg.text())) problems.push(`${name}: ${msg.text()}`);
  });
  return page;
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

const message = (page, text) => page.locator('li.msg', { hasText: text });

let carol;
let dave;
let erin;

test('single sign-on with a pasted JWT', { timeout: 60000 }, async () => {
  carol = await person('carol');
  await carol.goto('/');
  const token = jwt({ sub: 'idp-carol', preferred_username: 'carol', name: 'Carol', exp: Math.floor(Date.now() / 1000) + 3600 });
  await carol.getByLabel('Token from your identity provider (JWT)').fill(token);
  await carol.getByRole('button', { name: 'Sign in with token' }).click();
  await carol.getByRole('heading', { name: 'Cards', level: 1 }).waitFor();
  // The socket took the JWT too: the room directory answers.
  await carol.goto('/#/rooms');
  await carol.getByText('No open rooms. Open one!').waitFor();
  dave = await person('dave', { width: 390, height: 844 });
  erin = await person('erin');
  await signUp(dave, 'dave', 'Dave');
  await signUp(erin, 'erin', 'Erin');
  assert.deepEqual(problems, []);
});

test('an event: RSVP, the waitlist, the host\'s attendee list and the event room', { timeout: 90000 }, async () => {
  await carol.goto('/#/events');
  await carol.getByText('Host an event').click();
  const form = carol.getByRole('form', { name: 'Host an event' });
  await form.getByLabel('Title').fill('Ramen night');
  const soon = new Date(Date.now() + 86400000);
  const local = new Date(soon.getTime() - soon.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  await form.getByLabel('Starts').fill(local);
  await form.getByLabel('Venue').fill('Ichiran, by the station');
  await form.getByLabel('Capacity').fill('1');
  await form.getByRole('button', { name: 'Create event' }).click();
  await carol.getByRole('heading', { name: 'Ramen night' }).waitFor();
  await carol.getByText('You are hosting.').waitFor();
  const eventUrl = new URL(carol.url()).hash;

  await dave.goto('/#/events');
  await dave.getByRole('link', { name: 'Ramen night' }).click();
  await dave.getByRole('button', { name: 'Going', exact: true }).click();
  await dave.getByText('You are going.').waitFor();

  await erin.goto(`/${eventUrl}`);
  await erin.getByRole('button', { name: 'Going', exact: true }).click();
  await erin.getByText(/You are on the waitlist/).waitFor();
  // Only the host and going attendees have the room.
  assert.equal(await erin.getByRole('link', { name: 'Open the event room' }).count(), 0);

  await carol.reload();
  const attendees = carol.getByRole('list', { name: 'Attendees' });
  await attendees.locator('li', { hasText: 'Dave' }).filter({ hasText: 'going' }).waitFor();
  await attendees.locator('li', { hasText: 'Erin' }).filter({ hasText: 'waitlisted' }).waitFor();

  await dave.reload();
  await dave.getByRole('link', { name: 'Open the event room' }).click();
  await carol.getByRole('link', { name: 'Open the event room' }).click();
  await dave.locator('.members li', { hasText: 'Carol' }).waitFor();
  await carol.locator('.members li', { hasText: 'Dave' }).waitFor();
  await dave.getByRole('textbox', { name: 'Message', exact: true }).fill('see you at seven');
  await dave.getByRole('button', { name: 'Send', exact: true }).click();
  await message(carol, 'see you at seven').waitFor();
  await dave.screenshot({ path: path.join(SHOTS, '10-phone-event-room.png'), fullPage: true });
  assert.deepEqual(problems, []);
});

test('a community, its members and its room', { timeout: 60000 }, async () => {
  await dave.goto('/#/communities');
  await dave.getByText('Start a community').click();
  const form = dave.getByRole('form', { name: 'Start a community' });
  await form.getByLabel('Name').fill('Rustaceans');
  await form.getByLabel('Description').fill('People who write Rust');
  await form.getByRole('button', { name: 'Create' }).click();
  await dave.getByRole('heading', { name: 'Rustaceans' }).waitFor();

  await erin.goto('/#/communities');
  const search = erin.getByRole('form', { name: 'Search communities' });
  await search.getByLabel('Search').fill('rust');
  await search.getByRole('button', { name: 'Search' }).click();
  await erin.getByRole('link', { name: 'Rustaceans' }).click();
  await erin.getByRole('button', { name: 'Join' }).click();
  await erin.getByRole('list', { name: 'Members' }).locator('li', { hasText: 'Dave' }).waitFor();
  await erin.getByRole('link', { name: 'Open the community room' }).click();
  await erin.locator('.members li', { hasText: 'Erin' }).waitFor();
  await erin.getByRole('textbox', { name: 'Message', exact: true }).fill('hello rustaceans');
  await erin.getByRole('button', { name: 'Send', exact: true }).click();
  await message(erin, 'hello rustaceans').waitFor();
  await erin.screenshot({ path: path.join(SHOTS, '11-community-room.png'), fullPage: true });
  assert.deepEqual(problems, []);
});

test('a match, then a block closes the conversation for both', { timeout: 60000 }, async () => {
  await carol.goto('/#/cards');
  await carol.getByText('Post a card').click();
  const post = carol.getByRole('form', { name: 'Post a card' });
  await post.getByLabel('Title').fill('Tokio internals');
  await post.getByRole('button', { name: 'Post card' }).click();
  await erin.goto('/#/cards');
  const search = erin.getByRole('form', { name: 'Search cards' });
  await search.getByLabel('Search').fill('tokio');
  await search.getByRole('button', { name: 'Search' }).click();
  await erin.locator('li.item', { hasText: 'Tokio internals' }).getByRole('button', { name: 'Interested' }).click();
  await erin.getByRole('button', { name: /withdraw/ }).waitFor();
  await carol.locator('li.item', { hasText: 'Tokio internals' }).getByRole('link', { name: 'Who is interested' }).click();
  await carol.getByRole('button', { name: 'Match with Erin' }).click();
  await carol.waitForURL(/#\/chats\/.+/);
  const chat = new URL(carol.url()).hash;
  await erin.goto(`/${chat}`);
  await erin.getByRole('heading', { name: 'Carol' }).waitFor();
  await carol.getByRole('button', { name: 'Block' }).click();
  await carol.waitForURL(/#\/chats$/);
  await erin.getByText('This conversation is closed (blocked).').waitFor();
  assert.deepEqual(problems, []);
});

test('a revoked session sends the page back to log in, with no reconnect', { timeout: 60000 }, async () => {
  let sockets = 0;
  dave.on('websocket', () => { sockets += 1; });
  const token = await dave.evaluate(() => localStorage.getItem('meshi.token'));
  assert.ok(token);
  await server.call('POST', '/auth/logout', token);
  // The socket closes with 4010 (at once, or at the next revocation sweep).
  await dave.getByRole('heading', { name: 'Welcome to meshi' }).waitFor({ timeout: 30000 });
  const seen = sockets;
  await dave.waitForTimeout(2500);
  assert.equal(sockets, seen, 'no socket opened after 4010');
  assert.equal(await dave.evaluate(() => localStorage.getItem('meshi.token')), null);
  assert.deepEqual(problems, []);
});
