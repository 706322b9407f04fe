// The meshi web client: a small hash-routed page over the REST API and the
// socket, from this server alone.
import { clear, h } from './dom.js';
import { get, post, setToken, whenUnauthorized } from './api.js';
import { Live } from './socket.js';
import * as views from './views.js';

const KEY = 'meshi.token';
const main = document.getElementById('main');
const conn = document.getElementById('conn');
const nav = document.getElementById('nav');

const ctx = { me: null, live: null, cleanup: null, refreshBadges };

const routes = [
  [/^#\/login$/, views.login, false],
  [/^#\/cards$/, views.cards, true],
  [/^#\/cards\/([^/]+)$/, views.card, true],
  [/^#\/chats$/, views.chats, true],
  [/^#\/chats\/([^/]+)$/, views.chat, true],
  [/^#\/rooms$/, views.rooms, true],
  [/^#\/rooms\/(.+)$/, views.room, true],
  [/^#\/events$/, views.events, true],
  [/^#\/events\/([^/]+)$/, views.event, true],
  [/^#\/communities$/, views.communities, true],
  [/^#\/communities\/([^/]+)$/, views.community, true],
  [/^#\/notifications$/, views.notifications, true],
  [/^#\/mod$/, views.moderation, true],
  [/^#\/me$/, views.profile, true],
];

export async function signIn(token, user) {
  localStorage.setItem(KEY, token);
  setToken(token);
  ctx.me = user || (await get('/me'));
  startLive(token);
  showNav();
}

function startLive(token) {
  if (ctx.live) ctx.live.stop();
  ctx.live = new Live({
    token,
    onStatus: (text) => { conn.textContent = text; conn.hidden = !text; },
    onTerminal: (code) => { if (code === 4010 || code === 4001) signOut(false); },
  });
  window.meshi = { live: ctx.live, dropSocket: (holdMs) => ctx.live.drop(holdMs) };
  ctx.live.on('notification', () => refreshBadges());
  ctx.live.on('dm.message', () => refreshBadges());
}
ctx.signIn = signIn;

async function signOut(callServer = true) {
  if (callServer) await post('/auth/logout').catch(() => {});
  if (ctx.live) ctx.live.stop();
  ctx.live = null;
  ctx.me = null;
  localStorage.removeItem(KEY);
  setToken(null);
  nav.hidden = true;
  location.hash = '#/login';
  route();
}

function showNav() {
  nav.hidden = false;
  const staff = ctx.me && (ctx.me.role === 'moderator' || ctx.me.role === 'admin');
  document.getElementById('nav-mod').hidden = !staff;
  refreshBadges();
}

function badge(id, n) {
  const el = document.getElementById(id);
  el.textContent = n ? String(n) : '';
  el.hidden = !n;
  el.setAttribute('aria-label', `${n} unread`);
}

async function refreshBadges() {
  if (!ctx.me) return;
  try {
    const [convs, notes] = await Promise.all([
      get('/conversations', { limit: 100 }),
      get('/notifications', { unread: 'true', limit: 100 }),
    ]);
    badge('unread-total', convs.items.reduce((n, c) => n + c.unread_count, 0));
    badge('notice-count', notes.items.length);
  } catch { /* shown on the next try */ }
}

async function route() {
  if (ctx.cleanup) { try { ctx.cleanup(); } catch { /* gone */ } ctx.cleanup = null; }
  const hash = location.hash || '#/cards';
  const found = routes.find(([re]) => re.test(hash));
  if (!found) { location.hash = '#/cards'; return; }
  const [re, view, needsAuth] = found;
  if (needsAuth && !ctx.me) { location.hash = '#/login'; return; }
  if (!needsAuth && ctx.me) { location.hash = '#/cards'; return; }
  for (const a of nav.querySelectorAll('a')) {
    if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const params = hash.match(re).slice(1).map(decodeURIComponent);
  clear(main);
  try {
    ctx.cleanup = (await view(main, ctx, ...params)) || null;
  } catch (err) {
    main.append(h('p.error', { role: 'alert' }, `Could not load this page: ${err.message}`));
  }
}

document.getElementById('logout').addEventListener('click', () => signOut(true));
window.addEventListener('hashchange', route);
whenUnauthorized(() => signOut(false));

(async () => {
  const saved = localStorage.getItem(KEY);
  if (saved) {
    try { await signIn(saved); } catch { localStorage.removeItem(KEY); setToken(null); }
  }
  route();
})();
