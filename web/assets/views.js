// The pages. Each renders into `root` and may return a cleanup function.
import { clear, field, h, tags, time, userName, values } from './dom.js';
import { del, get, patch, post, put } from './api.js';

// ---------- small pieces ----------

/** Renders `messages` into `list`, keeping the element of every message
 * that did not change, so an open edit or report form survives pushes. */
function renderMessages(list, messages, build, extraKey = () => '') {
  const before = new Map([...list.children].map((li) => [li.dataset.key, li]));
  const wanted = messages.map((m) => {
    const key = `${m.seq}|${m.deleted ? 'x' : ''}|${m.edited_at || ''}|${m.text}|${extraKey(m)}`;
    const kept = before.get(key);
    if (kept) return kept;
    const li = build(m);
    li.dataset.key = key;
    li.dataset.seq = String(m.seq);
    return li;
  });
  if (!wanted.length) wanted.push(h('li.empty', { dataset: { key: 'empty' } }, 'No messages yet.'));
  const stuck = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...wanted);
  if (stuck || !before.size) list.scrollTop = list.scrollHeight;
}

function alertBox() {
  return h('p.error', { role: 'alert', hidden: true });
}

function showError(box, err) {
  box.textContent = err ? err.message || String(err) : '';
  box.hidden = !err;
}

/** A form whose submit runs `fn(values, form)`, errors shown in it. */
function form(label, controls, submitText, fn, opts = {}) {
  const box = alertBox();
  const el = h('form.card-form', { 'aria-label': label, novalidate: opts.novalidate },
    opts.titled ? h('h3.form-title', label) : null, controls, h('div.actions', h('button.primary', { type: 'submit' }, submitText)), box);
  el.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(box, null);
    const button = el.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await fn(values(el), el);
      if (opts.reset !== false) el.reset();
    } catch (err) {
      showError(box, err);
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

function input(name, attrs = {}) {
  return h('input', { name, type: 'text', autocomplete: 'off', ...attrs });
}

function button(text, onclick, attrs = {}) {
  return h('button', { type: 'button', onclick, ...attrs }, text);
}

/** A button whose async action reports failure next to it. */
function action(text, fn, attrs = {}) {
  const box = h('span.error', { role: 'alert', hidden: true });
  const b = button(text, async () => {
    b.disabled = true;
    showError(box, null);
    try { await fn(b); } catch (err) { showError(box, err); } finally { b.disabled = false; }
  }, attrs);
  return h('span.action', b, box);
}

function tagList(list, onTag) {
  if (!list || !list.length) return null;
  return h('ul.tags', { 'aria-label': 'Tags' }, list.map((t) => h('li', onTag
    ? button(`#${t}`, () => onTag(t), { className: 'tag', 'aria-label': `Show cards tagged ${t}` })
    : h('span.tag', `#${t}`))));
}

function heading(text, ...extra) {
  return h('div.heading', h('h1', text), ...extra);
}

function empty(text) {
  return h('p.empty', text);
}

function reportForm(kind, targetId, extra = {}) {
  const details = h('details.report', h('summary', 'Report'));
  details.append(form(`Report this ${kind.replace('_', ' ')}`,
    field('Reason', input('reason', { required: true, maxLength: 500 })), 'Send report',
    async (v) => {
      await post('/reports', { kind, target_id: targetId, reason: v.reason, ...extra });
      details.open = false;
      details.querySelector('summary').textContent = 'Reported';
    }));
  return details;
}

function isStaff(ctx) {
  return ctx.me.role === 'moderator' || ctx.me.role === 'admin';
}

// ---------- sign in ----------

export async function login(root, ctx) {
  root.append(
    heading('Welcome to meshi'),
    h('p', 'Post a talk topic, find people interested in it, chat one on one, or drop into a room.'),
    h('div.grid',
      h('section', h('h2', 'Log in'), form('Log in',
        [field('Handle', input('handle', { autocomplete: 'username', required: true })),
          field('Password', input('password', { type: 'password', autocomplete: 'current-password', required: true }))],
        'Log in', async (v) => {
          const data = await post('/auth/login', { handle: v.handle, password: v.password });
          await ctx.signIn(data.token, data.user);
          location.hash = '#/cards';
        })),
      h('section', h('h2', 'Sign up'), form('Sign up',
        [field('Handle', input('handle', { autocomplete: 'username', required: true, pattern: '[a-z0-9_]{3,32}' }), '3-32 of a-z, 0-9, _'),
          field('Display name', input('display_name', { required: true, maxLength: 50 })),
          field('Password', input('password', { type: 'password', autocomplete: 'new-password', required: true, minLength: 8 }), '8-128 characters')],
        'Create account', async (v) => {
          const data = await post('/auth/register', v);
          await ctx.signIn(data.token, data.user);
          location.hash = '#/cards';
        })),
      h('section', h('h2', 'Single sign-on'), form('Single sign-on',
        field('Token from your identity provider (JWT)', h('textarea', { name: 'jwt', rows: 3, required: true })),
        'Sign in with token', async (v) => {
          await ctx.signIn(v.jwt);
          location.hash = '#/cards';
        }))),
  );
}

export async function profile(root, ctx) {
  const me = await get('/me');
  const saved = h('p.meta', { role: 'status' });
  root.append(heading('Your profile', h('span.meta', `@${me.handle} · ${me.role}`)), form('Profile', [
    field('Display name', input('display_name', { value: me.display_name, maxLength: 50 })),
    field('Bio', h('textarea', { name: 'bio', rows: 3, value: me.bio })),
    field('Tags', input('tags', { value: me.tags.join(', ') }), 'comma separated'),
  ], 'Save', async (v) => {
    ctx.me = await patch('/me', { display_name: v.display_name, bio: v.bio, tags: tags(v.tags) });
    saved.textContent = 'Saved.';
  }, { reset: false }), saved);
}

// ---------- cards ----------

export async function cards(root, ctx) {
  const list = h('ul.list', { 'aria-label': 'Cards' });
  const search = { q: '', tag: '' };
  const searchForm = form('Search cards', [
    field('Search', input('q', { type: 'search' })),
    field('Tag', input('tag')),
  ], 'Search', async (v) => { search.q = v.q; search.tag = v.tag; await load(); }, { reset: false });

  async function load() {
    const page = await get('/cards', { q: search.q, tag: search.tag, limit: 50 });
    clear(list);
    if (!page.items.length) list.append(empty('No cards yet.'));
    for (const card of page.items) list.append(cardItem(card));
  }

  function cardItem(card) {
    const mine = card.owner_id === ctx.me.id;
    return h('li.item', { dataset: { cardId: card.id } },
      h('h3', h('a', { href: `#/cards/${card.id}` }, card.title)),
      h('p.meta', 'by ', userName(card.owner), ' · ', time(card.created_at), card.status === 'closed' ? ' · closed' : ''),
      card.body ? h('p', card.body) : null,
      tagList(card.tags, (t) => { searchForm.tag.value = t; search.tag = t; load(); }),
      h('div.actions', mine
        ? h('a.button', { href: `#/cards/${card.id}` }, 'Who is interested')
        : [interestButton(card), reportForm('card', card.id)]));
  }

  root.append(
    heading('Cards'),
    h('details.new', h('summary', 'Post a card'), form('Post a card', [
      field('Title', input('title', { required: true, maxLength: 120 })),
      field('What to talk about', h('textarea', { name: 'body', rows: 3 })),
      field('Tags', input('tags'), 'comma separated, e.g. rust, ramen'),
    ], 'Post card', async (v) => {
      await post('/cards', { title: v.title, body: v.body, tags: tags(v.tags) });
      await load();
    })),
    searchForm, list);
  await load();
}

function interestButton(card) {
  let pressed = false;
  const wrap = h('span');
  const render = () => {
    clear(wrap).append(action(pressed ? 'Interested ✓ (withdraw)' : 'Interested', async () => {
      if (pressed) await del(`/cards/${card.id}/interest`);
      else await put(`/cards/${card.id}/interest`);
      pressed = !pressed;
      render();
    }, { 'aria-pressed': String(pressed), className: pressed ? 'pressed' : 'primary' }));
  };
  render();
  return wrap;
}

export async function card(root, ctx, id) {
  const c = await get(`/cards/${id}`);
  const mine = c.owner_id === ctx.me.id;
  root.append(heading(c.title), h('p.meta', 'by ', userName(c.owner)), c.body ? h('p', c.body) : null, tagList(c.tags));
  if (!mine) {
    root.append(h('div.actions', interestButton(c), reportForm('card', c.id)));
    return;
  }
  const list = h('ul.list', { 'aria-label': 'Interested people' });
  root.append(h('h2', 'Interested'), list);
  const page = await get(`/cards/${id}/interests`, { limit: 100 });
  if (!page.items.length) list.append(empty('Nobody yet.'));
  for (const it of page.items) {
    list.append(h('li.item', h('span', userName(it.user)), ' ', time(it.created_at), h('div.actions',
      action('Match', async () => {
        const data = await post(`/cards/${id}/matches`, { user_id: it.user.id });
        location.hash = `#/chats/${data.match.conversation_id}`;
      }, { className: 'primary', 'aria-label': `Match with ${it.user.display_name}` }))));
  }
}

// ---------- conversations ----------

export async function chats(root, ctx) {
  const list = h('ul.list', { 'aria-label': 'Conversations' });
  root.append(heading('Chats'), list);
  async function load() {
    const page = await get('/conversations', { limit: 100 });
    clear(list);
    if (!page.items.length) list.append(empty('No conversations yet: match with someone interested in your card.'));
    for (const c of page.items) {
      const last = c.last_message;
      list.append(h('li.item', h('a.row', { href: `#/chats/${c.id}` },
        h('strong', c.other_user.display_name),
        c.unread_count ? h('span.badge', { 'aria-label': `${c.unread_count} unread` }, String(c.unread_count)) : null,
        h('span.meta', last ? (last.deleted ? 'message deleted' : last.text) : 'matched'),
        time(c.last_activity_at))));
    }
  }
  await load();
  const off = ctx.live.on('dm.message', () => load().catch(() => {}));
  return off;
}

export async function chat(root, ctx, id) {
  const live = ctx.live;
  const convs = await get('/conversations', { limit: 100 });
  const item = convs.items.find((c) => c.id === id);
  if (!item) { root.append(heading('Chat'), empty('This conversation is closed or does not exist.')); return null; }
  const partner = item.other_user;
  const presence = h('span.presence', { role: 'status' }, '');
  const typing = h('p.typing', { 'aria-live': 'polite' }, '');
  const list = h('ol.messages', { 'aria-label': 'Messages' });
  const closedNote = h('p.notice', { role: 'status', hidden: true });
  const text = input('text', { required: true, maxLength: 4000, placeholder: 'Write a message' });
  let lastTyping = 0;
  text.addEventListener('input', () => {
    if (Date.now() - lastTyping > 1000) { lastTyping = Date.now(); live.cast({ type: 'dm.typing', conversation_id: id }); }
  });
  const send = form('Send a message', field('Message', text), 'Send', async (v) => {
    const data = await live.request({ type: 'dm.send', conversation_id: id, text: v.text, client_msg_id: crypto.randomUUID() }, { durable: true });
    live.addDm({ conversation_id: id, seq: data.seq, message_id: data.message_id, from: ctx.me, text: v.text, sent_at: new Date().toISOString() });
    render();
  });

  const olderButton = action('Show older messages', async () => {
    const before = list.scrollHeight;
    await live.older(id);
    render();
    list.scrollTop = list.scrollHeight - before;
  });
  root.append(
    heading(partner.display_name, presence),
    h('p.meta', `@${partner.handle}`),
    h('div.actions',
      action('Unmatch', async () => {
        const matches = await get('/matches', { limit: 100 });
        for (const m of matches.items.filter((x) => x.conversation_id === id)) await del(`/matches/${m.id}`);
        location.hash = '#/chats';
      }),
      action('Block', async () => { await post(`/users/${partner.id}/block`); location.hash = '#/chats'; }),
      reportForm('user', partner.id)),
    h('div.actions', olderButton), list, typing, closedNote, send);

  const conv = await live.openConversation(id);

  function render() {
    const messages = [...conv.messages.values()].sort((a, b) => a.seq - b.seq);
    let lastMine = null;
    for (const m of messages) if (m.from.id === ctx.me.id) lastMine = m;
    const readMark = (m) => (m === lastMine && conv.partnerRead >= m.seq ? 'read' : '');
    renderMessages(list, messages, (m) => {
      const mine = m.from.id === ctx.me.id;
      return h(`li.msg${mine ? '.mine' : ''}`,
        h('span.from', mine ? 'You' : m.from.display_name), ' ',
        h('span.text', m.deleted ? 'message deleted' : m.text),
        m.edited_at ? h('span.meta', ' (edited)') : null, ' ',
        time(m.sent_at),
        mine && !m.deleted ? h('details.edit', h('summary', 'Edit'), form('Edit message',
          field('New text', input('text', { value: m.text, required: true, maxLength: 4000 })), 'Save',
          (v) => live.request({ type: 'dm.edit', conversation_id: id, message_id: m.message_id, text: v.text }))) : null,
        mine && !m.deleted ? button('Delete', () => live.request({ type: 'dm.delete', conversation_id: id, message_id: m.message_id }).catch(() => {}), { className: 'small', 'aria-label': 'Delete this message' }) : null,
        !mine && !m.deleted ? reportForm('dm_message', m.message_id, { conversation_id: id }) : null,
        readMark(m) ? h('span.receipt', ' ✓ Read') : null);
    }, readMark);
    olderButton.hidden = !messages.length || messages[0].seq <= 1;
    markRead();
  }
  function markRead() {
    if (document.hidden) return;
    const last = conv.lastSeq;
    if (last && last > (conv.myRead || 0)) {
      conv.myRead = last;
      live.request({ type: 'dm.read', conversation_id: id, seq: last }).then(() => ctx.refreshBadges()).catch(() => {});
    }
  }
  function showPresence(p) {
    if (!p) return;
    presence.textContent = p.status === 'online' ? '● online' : '○ offline';
    presence.className = `presence ${p.status}`;
  }
  let typingTimer;
  const offs = [
    live.on('dm.message', (f) => { if (f.conversation_id === id) { typing.textContent = ''; render(); } }),
    live.on('dm.message_edited', (f) => { if (f.conversation_id === id) render(); }),
    live.on('dm.message_deleted', (f) => { if (f.conversation_id === id) render(); }),
    live.on('dm.read', (f) => { if (f.conversation_id === id) render(); }),
    live.on('conversation', (f) => { if (f.conversation_id === id) render(); }),
    live.on('dm.typing', (f) => {
      if (f.conversation_id !== id) return;
      typing.textContent = `${partner.display_name} is typing…`;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => { typing.textContent = ''; }, 3000);
    }),
    live.on('presence', (f) => { if (f.user_id === partner.id) showPresence(f); }),
    live.on('conversation.closed', (f) => {
      if (f.conversation_id !== id) return;
      closedNote.textContent = `This conversation is closed (${f.reason}).`;
      closedNote.hidden = false;
      send.hidden = true;
    }),
    live.on('ready', () => queryPresence()),
  ];
  function queryPresence() {
    live.request({ type: 'presence.query', user_ids: [partner.id] })
      .then((d) => showPresence(d.presence.find((p) => p.user_id === partner.id))).catch(() => {});
  }
  const onVisible = () => markRead();
  document.addEventListener('visibilitychange', onVisible);
  render();
  queryPresence();
  return () => { offs.forEach((off) => off()); clearTimeout(typingTimer); document.removeEventListener('visibilitychange', onVisible); };
}

// ---------- rooms ----------

function roomLabel(r) {
  return r.kind === 'drop_in' ? r.name : `${r.topic || r.name} (${r.kind})`;
}

export async function rooms(root, ctx) {
  const live = ctx.live;
  const list = h('ul.list', { 'aria-label': 'Open rooms' });
  root.append(heading('Rooms'),
    h('details.new', h('summary', 'Open a room'), form('Open a room', [
      field('Name', input('name', { required: true, maxLength: 60 })),
      field('Topic', input('topic', { maxLength: 200 })),
    ], 'Open room', async (v) => {
      const state = await live.create({ name: v.name, ...(v.topic ? { topic: v.topic } : {}) });
      location.hash = `#/rooms/${encodeURIComponent(state.room.id)}`;
    })),
    list);
  function render() {
    clear(list);
    const all = [...live.directory.values()];
    if (!all.length) list.append(empty('No open rooms. Open one!'));
    for (const r of all) {
      list.append(h('li.item', { dataset: { roomId: r.id } }, h('a.row', { href: `#/rooms/${encodeURIComponent(r.id)}` },
        h('strong', roomLabel(r)), r.topic && r.kind === 'drop_in' ? h('span.meta', r.topic) : null,
        h('span.count', { 'aria-label': `${r.member_count} inside` }, `${r.member_count}/${r.capacity} inside`))));
    }
  }
  const offs = [live.on('rooms.changed', render), live.on('directory', render)];
  await live.watch();
  render();
  return () => offs.forEach((off) => off());
}

export async function room(root, ctx, id) {
  const live = ctx.live;
  const title = h('h1', id);
  const topic = h('p.meta');
  const members = h('ul.members', { 'aria-label': 'Members' });
  const list = h('ol.messages', { 'aria-label': 'Messages' });
  const typing = h('p.typing', { 'aria-live': 'polite' });
  const gap = h('p.notice', { role: 'status', hidden: true }, 'Some messages were missed while you were away.');
  const gone = h('p.notice', { role: 'alert', hidden: true });
  const text = input('text', { required: true, maxLength: 4000, placeholder: 'Write to the room' });
  let lastTyping = 0;
  text.addEventListener('input', () => {
    if (Date.now() - lastTyping > 1000) { lastTyping = Date.now(); live.cast({ type: 'room.typing', room_id: id }); }
  });
  const send = form('Send to the room', field('Message', text), 'Send', async (v) => {
    await live.request({ type: 'room.send', room_id: id, text: v.text, client_msg_id: crypto.randomUUID() }, { durable: true });
  });
  root.append(h('div.heading', title, action('Leave room', async () => { await live.leave(id); location.hash = '#/rooms'; })),
    topic, h('div.room',
      h('section.room-main', { 'aria-label': 'Conversation' }, gap, list, typing, gone, send),
      h('aside', h('h2', 'Inside'), members)));

  const state = await live.join(id);
  const typingUsers = new Map();

  function canModerate() {
    const r = live.rooms.get(id);
    return isStaff(ctx) || (r && r.room.kind === 'drop_in' && r.room.host_id === ctx.me.id);
  }
  function render() {
    const s = live.rooms.get(id) || state;
    title.textContent = roomLabel(s.room);
    topic.textContent = s.room.topic && s.room.kind === 'drop_in' ? s.room.topic : '';
    gap.hidden = !s.gap;
    clear(members);
    for (const u of s.members.values()) {
      members.append(h('li', { dataset: { userId: u.id } }, h('span', userName(u)),
        s.room.host_id === u.id ? h('span.meta', ' host') : null,
        canModerate() && u.id !== ctx.me.id ? action('Kick', () => live.request({ type: 'room.kick', room_id: id, user_id: u.id }), { className: 'small', 'aria-label': `Kick ${u.display_name}` }) : null));
    }
    const messages = [...s.messages.values()].sort((a, b) => a.seq - b.seq);
    const moderator = canModerate();
    renderMessages(list, messages, (m) => {
      const mine = m.from.id === ctx.me.id;
      const li = h(`li.msg${mine ? '.mine' : ''}`,
        h('span.from', mine ? 'You' : m.from.display_name), ' ',
        h('span.text', m.deleted ? 'message deleted' : m.text),
        m.edited_at && !m.deleted ? h('span.meta', ' (edited)') : null, ' ', time(m.sent_at));
      if (!m.deleted) {
        if (mine) {
          li.append(h('details.edit', h('summary', 'Edit'), form('Edit message',
            field('New text', input('text', { value: m.text, required: true, maxLength: 4000 })), 'Save',
            (v) => live.request({ type: 'room.edit', room_id: id, message_id: m.message_id, text: v.text }))));
        }
        if (mine || moderator) li.append(button('Delete', () => live.request({ type: 'room.delete', room_id: id, message_id: m.message_id }).catch(() => {}), { className: 'small', 'aria-label': 'Delete this message' }));
        if (!mine) li.append(reportForm('room_message', m.message_id, { room_id: id }));
      }
      return li;
    }, () => (moderator ? 'mod' : ''));
    typing.textContent = typingUsers.size ? `${[...typingUsers.values()].join(', ')} typing…` : '';
  }
  const mine = (f) => f.room_id === id;
  const offs = ['room.message', 'room.message_edited', 'room.message_deleted', 'room.member_joined', 'room.member_left', 'room.state']
    .map((t) => live.on(t, (f) => {
      if (!mine(f)) return;
      if (t === 'room.message') typingUsers.delete(f.from.id);
      render();
    }));
  offs.push(live.on('room.typing', (f) => {
    if (!mine(f)) return;
    const s = live.rooms.get(id);
    const u = s && s.members.get(f.user_id);
    typingUsers.set(f.user_id, u ? u.display_name : 'someone');
    render();
    setTimeout(() => { typingUsers.delete(f.user_id); render(); }, 3000);
  }));
  for (const t of ['room.closed', 'room.removed', 'room.gone']) {
    offs.push(live.on(t, (f) => {
      if (!mine(f)) return;
      gone.textContent = t === 'room.closed' ? `This room was closed (${f.reason}).` : `You are out of this room (${f.reason}).`;
      gone.hidden = false;
      send.hidden = true;
    }));
  }
  render();
  return () => offs.forEach((off) => off());
}

// ---------- events ----------

function eventItem(e) {
  return h('li.item', { dataset: { eventId: e.id } },
    h('h3', h('a', { href: `#/events/${e.id}` }, e.title)),
    h('p.meta', time(e.starts_at), e.venue ? ` · ${e.venue}` : '', ` · hosted by ${e.host.display_name}`),
    h('p.meta', `${e.going_count}/${e.capacity} going · ${e.waitlist_count} waiting`, e.status === 'cancelled' ? ' · cancelled' : ''),
    tagList(e.tags));
}

export async function events(root) {
  const list = h('ul.list', { 'aria-label': 'Upcoming events' });
  async function load() {
    const page = await get('/events', { limit: 50 });
    clear(list);
    if (!page.items.length) list.append(empty('No upcoming events.'));
    for (const e of page.items) list.append(eventItem(e));
  }
  root.append(heading('Events'), h('details.new', h('summary', 'Host an event'), form('Host an event', [
    field('Title', input('title', { required: true })),
    field('Starts', input('starts_at', { type: 'datetime-local', required: true })),
    field('Venue', input('venue')),
    field('Capacity', input('capacity', { type: 'number', min: 1, max: 500, value: 8, required: true })),
    field('Description', h('textarea', { name: 'description', rows: 2 })),
    field('Tags', input('tags'), 'comma separated'),
  ], 'Create event', async (v) => {
    const e = await post('/events', {
      title: v.title, description: v.description, starts_at: new Date(v.starts_at).toISOString(),
      venue: v.venue || 'to be announced', capacity: Number(v.capacity), tags: tags(v.tags),
    });
    location.hash = `#/events/${e.id}`;
  })), list);
  await load();
}

export async function event(root, ctx, id) {
  const e = await get(`/events/${id}`);
  const host = e.host_id === ctx.me.id;
  const status = h('p.meta', { role: 'status' });
  const rsvp = (s, place) => {
    status.textContent = host ? 'You are hosting.' : s === 'going' ? 'You are going.'
      : s === 'waitlisted' ? `You are on the waitlist${place ? ` (place ${place})` : ''}.` : 'You have not answered.';
  };
  rsvp(e.my_rsvp);
  root.append(heading(e.title), h('p.meta', time(e.starts_at), e.venue ? ` · ${e.venue}` : '', ` · hosted by ${userName(e.host)}`),
    e.description ? h('p', e.description) : null,
    h('p.meta', `${e.going_count}/${e.capacity} going · ${e.waitlist_count} waiting`), status);
  if (!host && e.status !== 'cancelled') {
    root.append(h('div.actions',
      action('Going', async () => { const a = await put(`/events/${id}/rsvp`, { status: 'going' }); rsvp(a.status, a.waitlist_position); }, { className: 'primary' }),
      action('Join the waitlist', async () => { const a = await put(`/events/${id}/rsvp`, { status: 'waitlisted' }); rsvp(a.status, a.waitlist_position); }),
      action('Not going', async () => { await del(`/events/${id}/rsvp`); rsvp(null); })));
  }
  if (host || e.my_rsvp === 'going') root.append(h('p', h('a.button', { href: `#/rooms/${encodeURIComponent(e.room_id)}` }, 'Open the event room')));
  if (host) {
    root.append(h('div.actions', action('Cancel the event', async () => { await del(`/events/${id}`); location.hash = '#/events'; })));
    const list = h('ul.list', { 'aria-label': 'Attendees' });
    const page = await get(`/events/${id}/attendees`, { limit: 100 });
    if (!page.items.length) list.append(empty('Nobody yet.'));
    for (const a of page.items) list.append(h('li.item', `${a.position}. `, userName(a.user), h('span.meta', ` ${a.status}`)));
    root.append(h('h2', 'Attendees'), list);
  }
}

// ---------- communities ----------

export async function communities(root) {
  const list = h('ul.list', { 'aria-label': 'Communities' });
  const search = { q: '' };
  async function load() {
    const page = await get('/communities', { q: search.q, limit: 50 });
    clear(list);
    if (!page.items.length) list.append(empty('No communities found.'));
    for (const c of page.items) {
      list.append(h('li.item', h('h3', h('a', { href: `#/communities/${c.id}` }, c.name)),
        h('p.meta', `${c.member_count} members`), c.description ? h('p', c.description) : null, tagList(c.tags)));
    }
  }
  root.append(heading('Communities'),
    h('details.new', h('summary', 'Start a community'), form('Start a community', [
      field('Name', input('name', { required: true })),
      field('Description', h('textarea', { name: 'description', rows: 2 })),
      field('Tags', input('tags'), 'comma separated'),
    ], 'Create', async (v) => {
      const c = await post('/communities', { name: v.name, description: v.description, tags: tags(v.tags) });
      location.hash = `#/communities/${c.id}`;
    })),
    form('Search communities', field('Search', input('q', { type: 'search' })), 'Search', async (v) => { search.q = v.q; await load(); }, { reset: false }),
    list);
  await load();
}

export async function community(root, ctx, id) {
  const c = await get(`/communities/${id}`);
  root.append(heading(c.name), h('p.meta', `${c.member_count} members`), c.description ? h('p', c.description) : null, tagList(c.tags),
    h('div.actions', c.is_member
      ? [h('a.button', { href: `#/rooms/${encodeURIComponent(c.room_id)}` }, 'Open the community room'),
        action('Leave', async () => { await del(`/communities/${id}/membership`); location.reload(); })]
      : action('Join', async () => { await put(`/communities/${id}/membership`); location.reload(); }, { className: 'primary' })));
  if (c.is_member) {
    const page = await get(`/communities/${id}/members`, { limit: 100 });
    root.append(h('h2', 'Members'), h('ul.list', { 'aria-label': 'Members' }, page.items.map((m) => h('li.item', userName(m.user)))));
  }
}

// ---------- notifications ----------

function describe(n) {
  const d = n.data || {};
  const who = d.user ? d.user.display_name : 'Someone';
  const eventLink = (text) => (d.event_id ? h('a', { href: `#/events/${d.event_id}` }, text) : text);
  switch (n.kind) {
    case 'interest_received':
      return h('span', `${who} is interested in your card. `, d.card_id ? h('a', { href: `#/cards/${d.card_id}` }, 'See who') : null);
    case 'matched':
      return h('span', `You matched with ${who}. `, d.conversation_id ? h('a', { href: `#/chats/${d.conversation_id}` }, 'Open the chat') : null);
    case 'waitlist_promoted': return h('span', 'A seat opened: you are going to ', eventLink(d.title || 'the event'), '.');
    case 'event_updated': return h('span', eventLink(d.title || 'An event'), ' you attend changed.');
    case 'event_cancelled': return h('span', `${d.title || 'An event'} you attend was cancelled.`);
    case 'report_resolved': return `Your report was resolved: ${(d.action || '').replaceAll('_', ' ')}.`;
    default: return n.kind.replaceAll('_', ' ');
  }
}

export async function notifications(root, ctx) {
  const list = h('ul.list', { 'aria-label': 'Notifications' });
  let newest = null;
  async function load() {
    const page = await get('/notifications', { limit: 50 });
    clear(list);
    newest = page.items[0] ? page.items[0].id : null;
    if (!page.items.length) list.append(empty('Nothing yet.'));
    for (const n of page.items) list.append(h('li.item', { dataset: { kind: n.kind } }, describe(n), ' ', time(n.created_at)));
  }
  root.append(heading('Notifications', action('Mark all read', async () => {
    if (newest) await post('/notifications/read', { up_to_id: newest });
    ctx.refreshBadges();
  })), list);
  await load();
  return ctx.live.on('notification', () => load().catch(() => {}));
}

// ---------- moderation ----------

export async function moderation(root, ctx) {
  if (!isStaff(ctx)) { root.append(heading('Moderation'), empty('Moderators only.')); return; }
  const queue = h('ul.list', { 'aria-label': 'Open reports' });
  async function loadQueue() {
    const page = await get('/admin/reports', { status: 'open', limit: 100 });
    clear(queue);
    if (!page.items.length) queue.append(empty('No open reports.'));
    for (const r of page.items) {
      queue.append(h('li.item', { dataset: { reportId: r.id } },
        h('p', h('strong', r.kind.replace('_', ' ')), ` ${r.target_id}`, r.room_id ? ` in ${r.room_id}` : ''),
        h('p.meta', `by ${userName(r.reporter)} · `, time(r.created_at)),
        h('p', `Reason: ${r.reason}`), r.excerpt ? h('blockquote', r.excerpt) : null,
        form(`Resolve report ${r.id}`, [
          field('Action', h('select', { name: 'action' },
            ['dismissed', 'message_deleted', 'user_kicked', 'user_suspended'].map((a) => h('option', { value: a }, a.replace('_', ' '))))),
          field('Note', input('note', { maxLength: 500 })),
        ], 'Resolve', async (v) => {
          await post(`/admin/reports/${r.id}/resolve`, { action: v.action, ...(v.note ? { note: v.note } : {}) });
          await loadQueue();
        })));
    }
  }
  const users = h('ul.list', { 'aria-label': 'Users' });
  const userSearch = form('Find users', field('Handle or name', input('q', { type: 'search' })), 'Find', async (v) => {
    const page = await get('/admin/users', { q: v.q, limit: 50 });
    clear(users);
    for (const u of page.items) {
      users.append(h('li.item', userName(u), h('span.meta', ` ${u.role}`), u.suspended_until ? h('span.meta', ' · suspended') : null,
        u.suspended_until
          ? action('Lift suspension', () => del(`/admin/users/${u.id}/suspend`))
          : form(`Suspend ${u.handle}`, field('Reason', input('reason', { required: true })), 'Suspend',
            (s) => post(`/admin/users/${u.id}/suspend`, { reason: s.reason }))));
    }
  }, { reset: false });
  const roomTools = h('div.grid',
    form('Delete a room message', [field('Room id', input('room_id', { required: true })), field('Message id', input('message_id', { required: true }))],
      'Delete message', (v) => ctx.live.request({ type: 'room.delete', room_id: v.room_id, message_id: v.message_id }), { titled: true }),
    form('Kick from a room', [field('Room id', input('room_id', { required: true })), field('User id', input('user_id', { required: true })), field('Reason', input('reason'))],
      'Kick', (v) => ctx.live.request({ type: 'room.kick', room_id: v.room_id, user_id: v.user_id, ...(v.reason ? { reason: v.reason } : {}) }), { titled: true }),
    form('Close a room', field('Room id', input('room_id', { required: true })), 'Close room', (v) => del(`/admin/rooms/${encodeURIComponent(v.room_id)}`), { titled: true }));
  root.append(heading('Moderation'), h('h2', 'Report queue'), queue, h('h2', 'Rooms'), roomTools, h('h2', 'Users'), userSearch, users);
  if (ctx.me.role === 'admin') {
    const audit = h('ul.list', { 'aria-label': 'Audit log' });
    const page = await get('/admin/audit', { limit: 50 });
    for (const a of page.items) audit.append(h('li.item', h('code', a.action), ` ${a.target || ''} by ${a.actor_id ?? 'config'} `, time(a.created_at)));
    if (!page.items.length) audit.append(empty('Nothing audited yet.'));
    root.append(h('h2', 'Audit log'), audit);
  }
  await loadQueue();
}
