// One socket to /ws, kept open: hello with the token, requests matched to
// replies by ref, pushes handed to listeners, and recovery after a drop:
// jittered exponential backoff (or the server's retry_after_ms), rooms
// rejoined with since_seq and deduplicated by seq, the directory watched
// again, conversations caught up with dm.history after_seq, and unanswered
// sends repeated with the same client_msg_id. Terminal closes (4001, 4010
// and the others the protocol names) end it for good.

const TERMINAL = new Set([1008, 1009, 4001, 4008, 4010]);
const REQUEST_TIMEOUT_MS = 15000;

export class Live {
  constructor({ token, onStatus, onTerminal }) {
    this.token = token;
    this.onStatus = onStatus || (() => {});
    this.onTerminal = onTerminal || (() => {});
    this.ref = 0;
    this.waiting = new Map(); // ref -> {resolve, reject, frame, durable, timer}
    this.listeners = new Map(); // type -> Set(fn)
    this.ready = false;
    this.stopped = false;
    this.attempt = 0;
    this.retryAfter = null;
    this.readyWaiters = [];
    this.user = null;
    // Room state lives here so it survives reconnects and view changes.
    this.rooms = new Map(); // room_id -> {room, members: Map, messages: Map(seq->msg), lastSeq, gap}
    this.conversations = new Map(); // conversation_id -> {messages: Map, lastSeq, partnerRead}
    this.watching = false;
    this.directory = new Map();
    this.presence = new Map();
    this.connect();
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, frame) {
    for (const fn of this.listeners.get(type) || []) {
      try { fn(frame); } catch (err) { console.error(err); }
    }
    for (const fn of this.listeners.get('*') || []) {
      try { fn(frame); } catch (err) { console.error(err); }
    }
  }

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/ws`, 'meshi.v1');
    this.ws = ws;
    this.onStatus(this.attempt ? 'Reconnecting…' : 'Connecting…');
    ws.onopen = () => this.hello(ws);
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      this.receive(frame);
    };
    ws.onclose = (ev) => this.closed(ws, ev.code);
    ws.onerror = () => {};
  }

  async hello(ws) {
    try {
      const data = await this.raw(ws, { type: 'hello', token: this.token });
      this.user = data.user;
      await this.resume(ws);
      this.attempt = 0;
      this.ready = true;
      this.onStatus('');
      for (const w of this.readyWaiters.splice(0)) w();
      // Repeat the durable requests the drop left unanswered.
      for (const [ref, entry] of this.waiting) {
        if (entry.ws !== ws && entry.durable) {
          entry.ws = ws;
          ws.send(JSON.stringify({ ...entry.frame, ref }));
        }
      }
      this.emit('ready', {});
    } catch (err) {
      console.warn('hello failed', err);
    }
  }

  /** After a reconnect: rooms, directory, conversations. */
  async resume(ws) {
    for (const [roomId, state] of this.rooms) {
      try {
        const data = await this.raw(ws, { type: 'room.join', room_id: roomId, since_seq: state.lastSeq });
        this.absorbJoin(roomId, data, true);
      } catch (err) {
        this.rooms.delete(roomId);
        this.emit('room.gone', { room_id: roomId, reason: err.code || 'error' });
      }
    }
    if (this.watching) {
      try {
        const data = await this.raw(ws, { type: 'rooms.watch' });
        this.directory = new Map(data.rooms.map((r) => [r.id, r]));
        this.emit('directory', {});
      } catch (err) {
        console.warn('rooms.watch failed', err);
      }
    }
    for (const [id, conv] of this.conversations) {
      await this.catchUp(ws, id, conv);
    }
  }

  async catchUp(ws, id, conv) {
    for (let guard = 0; guard < 50; guard++) {
      const data = await this.raw(ws, { type: 'dm.history', conversation_id: id, after_seq: conv.lastSeq, limit: 100 })
        .catch(() => ({ messages: [] }));
      for (const m of data.messages) this.addDm(m);
      if (data.messages.length < 100) break;
    }
    this.emit('conversation', { conversation_id: id });
  }

  closed(ws, code) {
    if (ws !== this.ws) return;
    this.ready = false;
    for (const [ref, entry] of this.waiting) {
      if (!entry.durable) {
        clearTimeout(entry.timer);
        this.waiting.delete(ref);
        entry.reject(Object.assign(new Error('connection lost'), { code: 'disconnected' }));
      }
    }
    if (this.stopped) return;
    if (TERMINAL.has(code)) {
      this.stopped = true;
      this.onStatus(code === 4010 || code === 4001 ? 'Signed out: log in again.' : `Disconnected (${code}).`);
      this.onTerminal(code);
      return;
    }
    let delay;
    if (this.retryAfter !== null) {
      delay = this.retryAfter + Math.random() * 500;
      this.retryAfter = null;
    } else {
      const base = Math.min(30000, 500 * 2 ** this.attempt);
      delay = base / 2 + Math.random() * base / 2;
    }
    this.attempt += 1;
    this.onStatus(`Connection lost; reconnecting in ${Math.ceil(delay / 1000)} s…`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  receive(frame) {
    if (frame.type === 'ok' || frame.type === 'error') {
      const entry = this.waiting.get(frame.ref);
      if (!entry) {
        if (frame.type === 'error') this.emit('error', frame);
        return;
      }
      this.waiting.delete(frame.ref);
      clearTimeout(entry.timer);
      if (frame.type === 'ok') entry.resolve(frame.data);
      else entry.reject(Object.assign(new Error(frame.error.message), frame.error));
      return;
    }
    this.absorbPush(frame);
    this.emit(frame.type, frame);
  }

  absorbPush(f) {
    const room = f.room_id && this.rooms.get(f.room_id);
    switch (f.type) {
      case 'reconnect':
        this.retryAfter = f.retry_after_ms || 1000;
        break;
      case 'room.message':
        if (room) this.addRoomMessage(room, f);
        break;
      case 'room.message_edited':
        if (room && room.messages.has(f.seq)) Object.assign(room.messages.get(f.seq), { text: f.text, edited_at: f.edited_at });
        break;
      case 'room.message_deleted':
        if (room && room.messages.has(f.seq)) Object.assign(room.messages.get(f.seq), { text: '', deleted: true });
        break;
      case 'room.member_joined':
        if (room) room.members.set(f.user.id, f.user);
        break;
      case 'room.member_left':
        if (room) room.members.delete(f.user_id);
        break;
      case 'room.closed':
      case 'room.removed':
        this.rooms.delete(f.room_id);
        break;
      case 'rooms.changed':
        if (f.closed) this.directory.delete(f.room_id);
        else this.directory.set(f.room.id, f.room);
        break;
      case 'dm.message':
        this.addDm(f);
        break;
      case 'dm.message_edited':
      case 'dm.message_deleted': {
        const conv = this.conversations.get(f.conversation_id);
        const m = conv && conv.messages.get(f.seq);
        if (m) Object.assign(m, f.type === 'dm.message_edited' ? { text: f.text, edited_at: f.edited_at } : { text: '', deleted: true });
        break;
      }
      case 'dm.read': {
        const conv = this.conv(f.conversation_id);
        if (f.user_id !== this.user?.id) conv.partnerRead = Math.max(conv.partnerRead, f.seq);
        break;
      }
      case 'presence':
        this.presence.set(f.user_id, f);
        break;
      default:
    }
  }

  addRoomMessage(room, m) {
    if (room.messages.has(m.seq)) return false; // seen already: dropped
    room.messages.set(m.seq, { ...m });
    room.lastSeq = Math.max(room.lastSeq, m.seq);
    return true;
  }

  conv(id) {
    if (!this.conversations.has(id)) this.conversations.set(id, { messages: new Map(), lastSeq: 0, partnerRead: 0 });
    return this.conversations.get(id);
  }

  addDm(m) {
    const conv = this.conv(m.conversation_id);
    conv.messages.set(m.seq, { ...m });
    conv.lastSeq = Math.max(conv.lastSeq, m.seq);
  }

  absorbJoin(roomId, data, resumed) {
    let state = this.rooms.get(roomId);
    if (!state) {
      state = { room: data.room, members: new Map(), messages: new Map(), lastSeq: 0, gap: false };
      this.rooms.set(roomId, state);
    }
    state.room = data.room;
    state.members = new Map(data.members.map((u) => [u.id, u]));
    for (const m of data.messages) {
      if (state.messages.has(m.seq)) Object.assign(state.messages.get(m.seq), m);
      else state.messages.set(m.seq, { ...m });
    }
    state.lastSeq = Math.max(state.lastSeq, data.last_seq);
    if (resumed && !data.recovered && state.messages.size) state.gap = true;
    this.emit('room.state', { room_id: roomId });
    return state;
  }

  raw(ws, frame, durable = false) {
    const ref = ++this.ref;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(ref);
        reject(Object.assign(new Error('no answer in time'), { code: 'timeout' }));
      }, durable ? REQUEST_TIMEOUT_MS * 4 : REQUEST_TIMEOUT_MS);
      this.waiting.set(ref, { resolve, reject, frame, durable, timer, ws });
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  whenReady() {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.readyWaiters.push(resolve);
      setTimeout(() => reject(Object.assign(new Error('not connected'), { code: 'disconnected' })), REQUEST_TIMEOUT_MS);
    });
  }

  /** A request once the socket is ready. `durable` ones survive a drop. */
  async request(frame, { durable = false } = {}) {
    if (!this.ready) await this.whenReady();
    return this.raw(this.ws, frame, durable);
  }

  /** Fire and forget (typing). */
  cast(frame) {
    if (this.ready && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  async join(roomId) {
    const existing = this.rooms.get(roomId);
    const data = await this.request({ type: 'room.join', room_id: roomId, ...(existing ? { since_seq: existing.lastSeq } : {}) });
    return this.absorbJoin(roomId, data, Boolean(existing));
  }

  async create(fields) {
    const data = await this.request({ type: 'room.create', ...fields });
    return this.absorbJoin(data.room.id, { room: data.room, members: [this.user], messages: [], last_seq: 0, recovered: false }, false);
  }

  async leave(roomId) {
    this.rooms.delete(roomId);
    await this.request({ type: 'room.leave', room_id: roomId }).catch(() => {});
  }

  async watch() {
    this.watching = true;
    const data = await this.request({ type: 'rooms.watch' });
    this.directory = new Map(data.rooms.map((r) => [r.id, r]));
    this.emit('directory', {});
  }

  async openConversation(id) {
    const conv = this.conv(id);
    if (!conv.loaded) {
      const data = await this.request({ type: 'dm.history', conversation_id: id, limit: 50 });
      for (const m of data.messages) this.addDm(m);
      conv.loaded = true;
    } else {
      await this.catchUp(this.ws, id, conv);
    }
    return conv;
  }

  /** Reads the page of messages before the oldest one shown. */
  async older(id) {
    const conv = this.conv(id);
    const first = Math.min(...conv.messages.keys());
    if (!Number.isFinite(first) || first <= 1) return 0;
    const data = await this.request({ type: 'dm.history', conversation_id: id, before_seq: first, limit: 50 });
    for (const m of data.messages) this.addDm(m);
    return data.messages.length;
  }

  /** Drops the connection as a network failure would, and stays away
   * `holdMs` before reconnecting (for tests and trying recovery out). */
  drop(holdMs) {
    if (holdMs) this.retryAfter = holdMs;
    if (this.ws) this.ws.close(4000, 'dropped');
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000);
  }
}
