// Accessible basics in headless Chromium: the main flows work from the
// keyboard alone (Tab to move, typing, Enter and Space to act), and every
// control on each main page has an accessible name.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, startServer } from './server.js';

const WAIT_MS = 10000;
/// Most Tab presses to reach a control before the test gives up.
const MOST_TABS = 60;

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server) await server.stop();
});

/// Presses Tab until the focused element is the one `locator` names.
async function tabTo(page, locator, what) {
  const target = await locator.elementHandle();
  for (let i = 0; i < MOST_TABS; i++) {
    await page.keyboard.press('Tab');
    if (await target.evaluate((el) => el === document.activeElement)) return;
  }
  assert.fail(`${what} is not reachable with Tab`);
}

/// Every button, link, field and summary on the page that a person can
/// see, without an accessible name.
function unnamedControls(page) {
  return page.evaluate(() => {
    const controls = document.querySelectorAll('button, a[href], input, select, textarea, summary');
    const visible = (el) => el.offsetParent !== null || el.getClientRects().length > 0;
    const named = (el) =>
      (el.labels && el.labels.length > 0) ||
      el.getAttribute('aria-label') ||
      el.getAttribute('aria-labelledby') ||
      (el.type !== 'hidden' && el.tagName !== 'INPUT' && el.textContent.trim());
    return [...controls]
      .filter((el) => el.type !== 'hidden' && visible(el) && !named(el))
      .map((el) => el.outerHTML.slice(0, 120));
  });
}

test('signing up, posting a card and reaching every page work from the keyboard', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, baseURL: server.base });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.goto('/');

  const signUp = page.getByRole('form', { name: 'Sign up' });
  await tabTo(page, signUp.getByLabel('Handle'), 'the sign-up handle');
  await page.keyboard.type('kira');
  await tabTo(page, signUp.getByLabel('Display name'), 'the display name');
  await page.keyboard.type('Kira');
  await tabTo(page, signUp.getByLabel('Password'), 'the password');
  await page.keyboard.type('password123');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Cards', level: 1 }).waitFor();
  assert.deepEqual(await unnamedControls(page), [], 'every control on the cards page is named');

  // Open the new-card form and post one, keys only.
  await tabTo(page, page.getByText('Post a card', { exact: true }), 'the new-card toggle');
  await page.keyboard.press('Enter');
  const post = page.getByRole('form', { name: 'Post a card' });
  await tabTo(page, post.getByLabel('Title'), 'the card title');
  await page.keyboard.type('Typed, not clicked');
  await tabTo(page, post.getByRole('button'), 'the post button');
  await page.keyboard.press('Enter');
  await page.getByRole('list', { name: 'Cards' }).getByText('Typed, not clicked').first().waitFor();

  // Every page of the main menu opens from the keyboard and names its
  // controls.
  for (const name of ['Chats', 'Rooms', 'Events', 'Communities']) {
    const link = page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });
    await tabTo(page, link, `the ${name} link`);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name, level: 1 }).waitFor();
    assert.deepEqual(await unnamedControls(page), [], `every control on the ${name} page is named`);
  }
  await context.close();
});
