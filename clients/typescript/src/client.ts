import { MeshiConnectionError, MeshiError, MeshiTimeoutError } from "./errors.js";
import {
  CloseCode,
  DecodeError,
  SUBPROTOCOL,
  decodeReply,
  decodeServerFrame,
  isPushType,
  type DmMessage,
  type HelloOk,
  type Op,
  type Push,
  type PushType,
  type Ref,
  type ReplyData,
  type RequestFields,
  type Room,
  type RoomJoined,
} from "./protocol.js";

// ------------------------------------------------------------- WebSocket

/**
 * The part of the WebSocket API the client uses. The browser's WebSocket,
 * Node's global WebSocket (Node 22+) and the `ws` package all fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

// --------------------------------------------------------------- options

export interface BackoffOptions {
  /** First delay after a dropped connection. Default 500 ms. */
  initialMs?: number;
  /** Largest delay. Default 30 000 ms. */
  maxMs?: number;
  /** Random extra wait added to the server's `retry_after_ms`: up to this much. Default 500 ms. */
  retryAfterJitterMs?: number;
}

export interface ClientOptions {
  /** The socket URL, e.g. `wss://chat.example.com/ws`. */
  url: string;
  /** A session token (REST login) or a JWT. Can be given later with setToken. */
  token?: string;
  /** WebSocket constructor; defaults to `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Default timeout of a request. Default 10 000 ms. */
  requestTimeoutMs?: number;
  /** How long opening the socket may take before it counts as failed. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** Reconnect after non-terminal closes. Default true. */
  reconnect?: boolean;
  backoff?: BackoffOptions;
  /** Page size of the `dm.history` catch-up after a reconnect (at most 100). Default 100. */
  catchUpPageSize?: number;
  /** Source of randomness in [0, 1) for jitter (for tests). Default Math.random. */
  random?: () => number;
}

export interface RequestOptions {
  /** Overrides the client's requestTimeoutMs. */
  timeoutMs?: number;
}

/**
 * - `idle`: connect() not called yet
 * - `connecting`: a socket is opening or its `hello` is in flight
 * - `open`: `hello` succeeded
 * - `waiting`: waiting out a backoff before the next attempt
 * - `needs_token`: the server ended the session (4001 or 4010); setToken() resumes
 * - `closed`: close() was called, or the server closed with a terminal code (1008, 1009, 4008)
 */
export type ConnectionState = "idle" | "connecting" | "open" | "waiting" | "needs_token" | "closed";

/** Close codes after which reconnecting as before cannot help. */
const TERMINAL_CLOSES: ReadonlySet<number> = new Set([
  CloseCode.ORIGIN_NOT_ALLOWED,
  CloseCode.TOO_BIG,
  CloseCode.RATE_LIMIT_ABUSE,
]);
const TOKEN_CLOSES: ReadonlySet<number> = new Set([CloseCode.AUTH_FAILED, CloseCode.TOKEN_ENDED]);

// ---------------------------------------------------------------- events

export interface DisconnectInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
  /** The wait before the next attempt, when willReconnect. */
  delayMs?: number;
}

export interface LifecycleEvents {
  /** Every push, after room and DM messages were deduplicated. */
  push: (frame: Push) => void;
  state: (state: ConnectionState) => void;
  /** `hello` succeeded; `reconnected` is false the first time. */
  connected: (info: { hello: HelloOk; reconnected: boolean }) => void;
  /** After a reconnect: rooms rejoined, directory rewatched, DMs caught up, queued requests sent. */
  resumed: () => void;
  disconnected: (info: DisconnectInfo) => void;
  /** The server closed with 4001 or 4010: give a new token with setToken(). */
  tokenRequired: (info: { code: number; reason: string }) => void;
  /** A room was rejoined after a reconnect. Recovered messages were delivered as `room.message` first. */
  roomRejoined: (info: { roomId: string; reply: RoomJoined; recovered: boolean }) => void;
  /**
   * A rejoin answered `recovered: false`: messages were missed. `reply.messages`
   * holds the latest ones; the app should reset the room's view to them.
   */
  roomReset: (info: { roomId: string; reply: RoomJoined }) => void;
  /** A room could not be rejoined (closed meanwhile, access lost); it is forgotten. */
  roomRejoinFailed: (info: { roomId: string; error: Error }) => void;
  /** `dm.history` catch-up of one conversation finished; `messages` were also delivered as `dm.message`. */
  dmCaughtUp: (info: { conversationId: string; messages: DmMessage[] }) => void;
  /** `rooms.watch` was sent again after a reconnect; here is the fresh directory. */
  roomsRewatched: (rooms: Room[]) => void;
  /** An error with no request to reject: an `error` frame without ref, a malformed frame, a failed catch-up. */
  error: (error: Error) => void;
  /** A frame whose `type` this library does not know (ignored otherwise). */
  unknownFrame: (frame: Record<string, unknown>) => void;
}

export type PushEvents = { [T in PushType]: (frame: Push<T>) => void };
export type ClientEvents = LifecycleEvents & PushEvents;

// ------------------------------------------------------------- internals

interface Pending {
  op: Op;
  ref: Ref;
  frame: Record<string, unknown>;
  resolve: (data: any) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  /** Safe to send again after a reconnect (a send with client_msg_id). */
  resendable: boolean;
  /** Runs on the reply before any later frame is read (bookkeeping). */
  onReply?: (data: any) => void;
  sent: boolean;
}

/** Tracks the seqs seen in a room or conversation. */
class SeqTracker {
  last = 0;
  private floor = 0;
  private seen = new Set<number>();

  constructor(last = 0) {
    this.last = last;
    this.floor = 0;
  }

  /** Records `seq`; false if it was seen already. */
  add(seq: number): boolean {
    if (seq <= this.floor || this.seen.has(seq)) return false;
    this.seen.add(seq);
    if (seq > this.last) this.last = seq;
    if (this.seen.size > 2000) {
      let dropped = 0;
      for (const s of this.seen) {
        this.seen.delete(s);
        if (s > this.floor) this.floor = s;
        if (++dropped >= 1000) break;
      }
    }
    return true;
  }

  has(seq: number): boolean {
    return seq <= this.floor || this.seen.has(seq);
  }

  /** Forgets everything: the history starts again at `last`. */
  reset(last: number): void {
    this.seen.clear();
    this.floor = 0;
    this.last = last;
  }
}

const randomId = (): string => {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
};

type Listener = (...args: any[]) => void;

// ---------------------------------------------------------------- client

/**
 * A meshi socket client: request/reply by ref with timeouts, reconnect with
 * jittered exponential backoff, room rejoin with `since_seq`, dedupe by seq
 * and DM catch-up.
 */
export class MeshiClient {
  private readonly opts: Required<Omit<ClientOptions, "token" | "WebSocket" | "backoff">> & {
    backoff: Required<BackoffOptions>;
  };
  private readonly WS: WebSocketConstructor;
  private token: string | undefined;
  private ws: WebSocketLike | null = null;
  private _state: ConnectionState = "idle";
  private nextRef = 1;
  private pending = new Map<Ref, Pending>();
  private outbox: Pending[] = [];
  private ready = false;
  private everConnected = false;
  private attempt = 0;
  private retryAfterMs: number | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private listeners = new Map<string, Set<Listener>>();
  private rooms = new Map<string, SeqTracker>();
  private conversations = new Map<string, SeqTracker>();
  private watching = false;
  private firstConnect: { resolve: (h: HelloOk) => void; reject: (e: Error) => void } | null = null;
  private _hello: HelloOk | null = null;

  constructor(options: ClientOptions) {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new Error("no WebSocket available: pass the WebSocket option (e.g. the `ws` package's WebSocket)");
    }
    this.WS = WS;
    this.token = options.token;
    this.opts = {
      url: options.url,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      reconnect: options.reconnect ?? true,
      catchUpPageSize: Math.min(100, Math.max(1, options.catchUpPageSize ?? 100)),
      random: options.random ?? Math.random,
      backoff: {
        initialMs: options.backoff?.initialMs ?? 500,
        maxMs: options.backoff?.maxMs ?? 30_000,
        retryAfterJitterMs: options.backoff?.retryAfterJitterMs ?? 500,
      },
    };
  }

  // ----------------------------------------------------------- accessors

  get state(): ConnectionState {
    return this._state;
  }

  /** The reply to the latest successful `hello`. */
  get hello(): HelloOk | null {
    return this._hello;
  }

  /** The highest seq seen per joined room (what a rejoin sends as since_seq). */
  roomSeqs(): Map<string, number> {
    return new Map([...this.rooms].map(([id, t]) => [id, t.last]));
  }

  /** The highest seq seen per tracked conversation (what catch-up sends as after_seq). */
  conversationSeqs(): Map<string, number> {
    return new Map([...this.conversations].map(([id, t]) => [id, t.last]));
  }

  // -------------------------------------------------------------- events

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<E extends keyof ClientEvents>(event: E, listener: NoInfer<ClientEvents[E]>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener);
    return () => this.off(event, listener);
  }

  off<E extends keyof ClientEvents>(event: E, listener: NoInfer<ClientEvents[E]>): void {
    this.listeners.get(event)?.delete(listener as Listener);
  }

  private emit<E extends keyof ClientEvents>(event: E, ...args: Parameters<ClientEvents[E]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (error) {
        if (event !== "error") this.emit("error", error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  private setState(state: ConnectionState): void {
    if (this._state === state) return;
    this._state = state;
    this.emit("state", state);
  }

  // ----------------------------------------------------------- lifecycle

  /**
   * Opens the socket and says `hello`. Resolves with the hello reply; rejects
   * if the token is refused (4001), the server closes terminally, or close()
   * is called first. Dropped connections are retried with backoff meanwhile.
   */
  connect(): Promise<HelloOk> {
    if (this._state !== "idle" && this._state !== "closed") {
      return Promise.reject(new Error(`connect() called while ${this._state}`));
    }
    if (!this.token) return Promise.reject(new Error("connect() needs a token"));
    return new Promise<HelloOk>((resolve, reject) => {
      this.firstConnect = { resolve, reject };
      this.attempt = 0;
      this.open();
    });
  }

  /** Closes the socket for good; pending requests are rejected. */
  close(): void {
    this.clearTimer();
    this.setState("closed");
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, "client closed");
      } catch {
        /* already closing */
      }
    }
    this.failAll(new MeshiConnectionError("the client was closed"));
    this.firstConnect?.reject(new MeshiConnectionError("the client was closed"));
    this.firstConnect = null;
  }

  /**
   * Sets the token for the next `hello`. After a 4001 or 4010 close the client
   * waits for this and then reconnects at once.
   */
  setToken(token: string): void {
    this.token = token;
    if (this._state === "needs_token") {
      this.attempt = 0;
      this.open();
    }
  }

  /** Hands a new token to the live socket (`auth.refresh`) and keeps it for reconnects. */
  async refreshToken(token: string, options?: RequestOptions): Promise<void> {
    await this.request("auth.refresh", { token }, options);
    this.token = token;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private open(): void {
    this.clearTimer();
    this.setState("connecting");
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.opts.url, [SUBPROTOCOL]);
    } catch (error) {
      this.emit("error", error instanceof Error ? error : new Error(String(error)));
      this.onSocketClosed(null, 1006, "could not open the socket");
      return;
    }
    this.ws = ws;
    const openTimer = setTimeout(() => {
      if (this.ws === ws && ws.readyState !== 1) {
        detach(ws);
        try {
          ws.close();
        } catch {
          /* ignore */
        }
        this.onSocketClosed(ws, 1006, "connect timeout");
      }
    }, this.opts.connectTimeoutMs);
    ws.onopen = () => {
      clearTimeout(openTimer);
      this.sayHello(ws);
    };
    ws.onmessage = (event: { data: unknown }) => this.onMessage(event.data);
    ws.onerror = () => {
      /* a close event follows */
    };
    ws.onclose = (event: { code?: number; reason?: string }) => {
      clearTimeout(openTimer);
      this.onSocketClosed(ws, event.code ?? 1006, event.reason ?? "");
    };
  }

  private sayHello(ws: WebSocketLike): void {
    const token = this.token ?? "";
    this.sendRequest("hello", { token }, { immediate: true })
      .then((hello) => {
        if (this.ws !== ws) return;
        this._hello = hello;
        this.attempt = 0;
        const reconnected = this.everConnected;
        this.everConnected = true;
        this.setState("open");
        this.emit("connected", { hello, reconnected });
        this.firstConnect?.resolve(hello);
        this.firstConnect = null;
        void this.resume(ws, reconnected);
      })
      .catch((error: Error) => {
        if (this.ws !== ws) return;
        // A refused hello is followed by a 4001 close from the server; a
        // hello that timed out gets the socket closed here.
        if (error instanceof MeshiTimeoutError) {
          try {
            ws.close();
          } catch {
            /* ignore */
          }
        }
      });
  }

  /** After hello: rejoin, rewatch, catch up, then send what was queued. */
  private async resume(ws: WebSocketLike, reconnected: boolean): Promise<void> {
    if (reconnected) {
      const jobs: Promise<void>[] = [];
      for (const [roomId, tracker] of this.rooms) jobs.push(this.rejoin(roomId, tracker));
      if (this.watching) {
        jobs.push(
          this.sendRequest("rooms.watch", {}, { immediate: true }).then(
            (data) => this.emit("roomsRewatched", data.rooms),
            (error: Error) => this.emit("error", error),
          ),
        );
      }
      for (const [conversationId] of this.conversations) jobs.push(this.catchUp(conversationId));
      await Promise.all(jobs);
    }
    if (this.ws !== ws || this._state !== "open") return;
    this.ready = true;
    const queued = this.outbox;
    this.outbox = [];
    for (const p of queued) this.transmit(p);
    if (reconnected) this.emit("resumed");
  }

  private async rejoin(roomId: string, tracker: SeqTracker): Promise<void> {
    // The reply is handled before any frame after it is read, so recovered
    // messages come out before live pushes that follow.
    const onReply = (reply: RoomJoined): void => {
      if (reply.recovered) {
        for (const message of reply.messages) {
          if (tracker.add(message.seq)) this.deliverPush({ type: "room.message", ...message });
        }
        if (reply.last_seq > tracker.last) tracker.last = reply.last_seq;
      } else {
        tracker.reset(reply.last_seq);
        for (const message of reply.messages) tracker.add(message.seq);
        this.emit("roomReset", { roomId, reply });
      }
      this.emit("roomRejoined", { roomId, reply, recovered: reply.recovered });
    };
    try {
      await this.sendRequest("room.join", { room_id: roomId, since_seq: tracker.last }, { immediate: true, onReply });
    } catch (error) {
      if (error instanceof MeshiError) {
        this.rooms.delete(roomId);
        this.emit("roomRejoinFailed", { roomId, error });
      } else {
        this.emit("error", error as Error);
      }
    }
  }

  private async catchUp(conversationId: string): Promise<void> {
    const limit = this.opts.catchUpPageSize;
    const delivered: DmMessage[] = [];
    // Pages go on from the last one, not from the tracker, which live
    // pushes may move ahead meanwhile.
    let after = this.conversations.get(conversationId)?.last ?? 0;
    try {
      for (;;) {
        const tracker = this.conversations.get(conversationId);
        if (!tracker) return;
        const page = await this.sendRequest(
          "dm.history",
          { conversation_id: conversationId, after_seq: after, limit },
          {
            immediate: true,
            onReply: (data) => {
              for (const message of data.messages) {
                if (tracker.add(message.seq)) {
                  delivered.push(message);
                  this.deliverPush({ type: "dm.message", ...message });
                }
              }
            },
          },
        );
        for (const message of page.messages) after = Math.max(after, message.seq);
        if (page.messages.length < limit) break;
      }
    } catch (error) {
      if (error instanceof MeshiError && (error.code === "forbidden" || error.code === "not_found")) {
        this.conversations.delete(conversationId);
      }
      this.emit("error", error as Error);
      return;
    }
    this.emit("dmCaughtUp", { conversationId, messages: delivered });
  }

  private onSocketClosed(ws: WebSocketLike | null, code: number, reason: string): void {
    if (ws && this.ws !== ws) return;
    if (ws) detach(ws);
    this.ws = null;
    this.ready = false;
    if (this._state === "closed") return;
    // Requests in flight: safe sends wait for the next socket, the rest fail.
    for (const [ref, p] of this.pending) {
      if (!p.sent) continue;
      if (p.resendable && p.op !== "hello") {
        p.sent = false;
        this.pending.delete(ref);
        this.outbox.push(p);
      } else {
        this.pending.delete(ref);
        clearTimeout(p.timer);
        p.reject(new MeshiConnectionError(`the socket closed (${code}) before ${p.op} was answered`, code));
      }
    }

    if (TOKEN_CLOSES.has(code)) {
      this.retryAfterMs = null;
      this.setState("needs_token");
      this.emit("disconnected", { code, reason, willReconnect: false });
      this.emit("tokenRequired", { code, reason });
      this.firstConnect?.reject(new MeshiConnectionError(`the server refused the token (${code} ${reason})`, code));
      this.firstConnect = null;
      return;
    }
    if (TERMINAL_CLOSES.has(code) || !this.opts.reconnect) {
      this.setState("closed");
      this.emit("disconnected", { code, reason, willReconnect: false });
      const error = new MeshiConnectionError(`the server closed the socket (${code} ${reason})`, code);
      this.failAll(error);
      this.firstConnect?.reject(error);
      this.firstConnect = null;
      return;
    }
    const delayMs = this.nextDelay();
    this.setState("waiting");
    this.emit("disconnected", { code, reason, willReconnect: true, delayMs });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.open();
    }, delayMs);
  }

  /** The wait before the next attempt: the server's retry_after_ms, else exponential backoff with jitter. */
  private nextDelay(): number {
    const { initialMs, maxMs, retryAfterJitterMs } = this.opts.backoff;
    const random = this.opts.random;
    if (this.retryAfterMs !== null) {
      const delay = this.retryAfterMs + random() * retryAfterJitterMs;
      this.retryAfterMs = null;
      this.attempt = 1;
      return Math.round(delay);
    }
    const base = Math.min(maxMs, initialMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(base / 2 + (random() * base) / 2);
  }

  private failAll(error: Error): void {
    for (const p of [...this.pending.values(), ...this.outbox]) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    this.pending.clear();
    this.outbox = [];
  }

  // ------------------------------------------------------------- frames

  private onMessage(raw: unknown): void {
    const text = typeof raw === "string" ? raw : String(raw);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.emit("error", new DecodeError("frame", "not JSON"));
      return;
    }
    const type = (value as { type?: unknown } | null)?.type;
    if (type !== "ok" && type !== "error" && !isPushType(type)) {
      if (typeof value === "object" && value !== null) this.emit("unknownFrame", value as Record<string, unknown>);
      return;
    }
    let frame;
    try {
      frame = decodeServerFrame(value);
    } catch (error) {
      const ref = (value as { ref?: unknown }).ref;
      const p = (typeof ref === "string" || typeof ref === "number") && this.pending.get(ref);
      if (p) this.settle(p, undefined, error as Error);
      else this.emit("error", error as Error);
      return;
    }
    if (frame.type === "ok") {
      const p = this.pending.get(frame.ref);
      if (!p) return;
      let data;
      try {
        data = decodeReply(p.op, frame.data);
      } catch (error) {
        this.settle(p, undefined, error as Error);
        return;
      }
      this.settle(p, data);
      return;
    }
    if (frame.type === "error") {
      const error = new MeshiError(frame.error.code, frame.error.message, frame.error.retry_after_ms);
      const p = frame.ref !== undefined ? this.pending.get(frame.ref) : undefined;
      if (p) this.settle(p, undefined, error);
      else this.emit("error", error);
      return;
    }
    this.onPush(frame);
  }

  private settle(p: Pending, data: unknown, error?: Error): void {
    this.pending.delete(p.ref);
    clearTimeout(p.timer);
    if (!error && p.onReply) {
      try {
        p.onReply(data);
      } catch (e) {
        error = e instanceof Error ? e : new Error(String(e));
      }
    }
    if (error) p.reject(error);
    else p.resolve(data);
  }

  private onPush(frame: Push): void {
    switch (frame.type) {
      case "room.message": {
        let tracker = this.rooms.get(frame.room_id);
        if (!tracker) this.rooms.set(frame.room_id, (tracker = new SeqTracker()));
        if (!tracker.add(frame.seq)) return;
        break;
      }
      case "dm.message": {
        let tracker = this.conversations.get(frame.conversation_id);
        if (!tracker) this.conversations.set(frame.conversation_id, (tracker = new SeqTracker()));
        if (!tracker.add(frame.seq)) return;
        break;
      }
      case "room.closed":
      case "room.removed":
        this.rooms.delete(frame.room_id);
        break;
      case "conversation.closed":
        if (frame.reason !== "blocked") this.conversations.delete(frame.conversation_id);
        break;
      case "reconnect":
        this.retryAfterMs = frame.retry_after_ms;
        break;
      default:
        break;
    }
    this.deliverPush(frame);
  }

  private deliverPush(frame: Push): void {
    this.emit(frame.type, frame as never);
    this.emit("push", frame);
  }

  // ----------------------------------------------------------- requests

  /**
   * Sends any op and resolves with its reply's `data`, or rejects with a
   * MeshiError (an `error` reply), a MeshiTimeoutError or a
   * MeshiConnectionError. While the socket is reconnecting the request waits
   * (within its timeout) and goes out once the session is resumed.
   */
  request<O extends Op>(op: O, fields: RequestFields[O], options?: RequestOptions): Promise<ReplyData[O]> {
    return this.sendRequest(op, fields, options ?? {});
  }

  /** Sends an op without `ref`: no reply on success (errors arrive as `error` events). */
  notify<O extends Op>(op: O, fields: RequestFields[O]): void {
    if (!this.ready || !this.ws) return;
    this.ws.send(JSON.stringify({ type: op, ...fields }));
  }

  private sendRequest<O extends Op>(
    op: O,
    fields: RequestFields[O],
    options: RequestOptions & { immediate?: boolean; resendable?: boolean; onReply?: (data: ReplyData[O]) => void },
  ): Promise<ReplyData[O]> {
    if (this._state === "idle" || this._state === "closed") {
      return Promise.reject(new MeshiConnectionError(`${op}: the client is ${this._state === "idle" ? "not connected" : "closed"}`));
    }
    const ref = this.nextRef++;
    const timeoutMs = options.timeoutMs ?? this.opts.requestTimeoutMs;
    return new Promise<ReplyData[O]>((resolve, reject) => {
      const p: Pending = {
        op,
        ref,
        frame: { type: op, ref, ...fields },
        resolve,
        reject,
        resendable: options.resendable ?? false,
        onReply: options.onReply,
        sent: false,
        timer: setTimeout(() => {
          this.pending.delete(ref);
          this.outbox = this.outbox.filter((q) => q !== p);
          reject(new MeshiTimeoutError(op, timeoutMs));
        }, timeoutMs),
      };
      if (options.immediate || this.ready) this.transmit(p);
      else this.outbox.push(p);
    });
  }

  private transmit(p: Pending): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) {
      if (p.resendable || !this.ready) {
        this.outbox.push(p);
        return;
      }
      clearTimeout(p.timer);
      p.reject(new MeshiConnectionError(`${p.op}: the socket is not open`));
      return;
    }
    p.sent = true;
    this.pending.set(p.ref, p);
    try {
      ws.send(JSON.stringify(p.frame));
    } catch (error) {
      this.pending.delete(p.ref);
      clearTimeout(p.timer);
      p.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  // ------------------------------------------------------------ the ops

  ping(options?: RequestOptions): Promise<ReplyData["ping"]> {
    return this.request("ping", {}, options);
  }

  /** Opens a drop-in room; this socket is in it at once and will rejoin it after reconnects. */
  async createRoom(fields: RequestFields["room.create"], options?: RequestOptions): Promise<Room> {
    const { room } = await this.sendRequest("room.create", fields, {
      ...options,
      onReply: (data) => {
        if (!this.rooms.has(data.room.id)) this.rooms.set(data.room.id, new SeqTracker(0));
      },
    });
    return room;
  }

  async listRooms(options?: RequestOptions): Promise<Room[]> {
    return (await this.request("room.list", {}, options)).rooms;
  }

  /**
   * Joins a room. Without `sinceSeq` and when the room was joined before on
   * this client, the highest seq seen is sent as since_seq. The room is
   * rejoined after every reconnect until left, closed or removed.
   */
  async joinRoom(roomId: string, sinceSeq?: number, options?: RequestOptions): Promise<RoomJoined> {
    const known = this.rooms.get(roomId);
    const since = sinceSeq ?? known?.last;
    return this.sendRequest(
      "room.join",
      since === undefined ? { room_id: roomId } : { room_id: roomId, since_seq: since },
      {
        ...options,
        onReply: (reply) => {
          let tracker = this.rooms.get(roomId);
          if (!tracker || !reply.recovered) {
            tracker = new SeqTracker(0);
            this.rooms.set(roomId, tracker);
          }
          for (const message of reply.messages) tracker.add(message.seq);
          if (reply.last_seq > tracker.last) tracker.last = reply.last_seq;
        },
      },
    );
  }

  async leaveRoom(roomId: string, options?: RequestOptions): Promise<void> {
    this.rooms.delete(roomId);
    await this.request("room.leave", { room_id: roomId }, options);
  }

  /**
   * Posts to a room. A client_msg_id is made up when not given, so the send
   * is retried after a reconnect without posting twice.
   */
  sendRoomMessage(
    roomId: string,
    text: string,
    clientMsgId: string = randomId(),
    options?: RequestOptions,
  ): Promise<ReplyData["room.send"]> {
    return this.sendRequest(
      "room.send",
      { room_id: roomId, text, client_msg_id: clientMsgId },
      { ...options, resendable: true },
    );
  }

  /** `room.typing` without ref (fire and forget). */
  roomTyping(roomId: string): void {
    this.notify("room.typing", { room_id: roomId });
  }

  async editRoomMessage(roomId: string, messageId: string, text: string, options?: RequestOptions): Promise<void> {
    await this.request("room.edit", { room_id: roomId, message_id: messageId, text }, options);
  }

  async deleteRoomMessage(roomId: string, messageId: string, options?: RequestOptions): Promise<void> {
    await this.request("room.delete", { room_id: roomId, message_id: messageId }, options);
  }

  async kick(fields: RequestFields["room.kick"], options?: RequestOptions): Promise<void> {
    await this.request("room.kick", fields, options);
  }

  async closeRoom(roomId: string, options?: RequestOptions): Promise<void> {
    await this.request("room.close", { room_id: roomId }, options);
  }

  /** Returns the directory and keeps `rooms.changed` pushes coming, across reconnects too. */
  async watchRooms(options?: RequestOptions): Promise<Room[]> {
    const { rooms } = await this.request("rooms.watch", {}, options);
    this.watching = true;
    return rooms;
  }

  /**
   * Sends a DM (with a made-up client_msg_id when not given, so it is
   * retried safely after a reconnect). The conversation is caught up after
   * reconnects from then on.
   */
  sendDm(
    conversationId: string,
    text: string,
    clientMsgId: string = randomId(),
    options?: RequestOptions,
  ): Promise<ReplyData["dm.send"]> {
    this.trackConversation(conversationId);
    return this.sendRequest(
      "dm.send",
      { conversation_id: conversationId, text, client_msg_id: clientMsgId },
      { ...options, resendable: true },
    );
  }

  /** `dm.history`; the messages count as seen for catch-up and dedupe. */
  async dmHistory(fields: RequestFields["dm.history"], options?: RequestOptions): Promise<DmMessage[]> {
    const { messages } = await this.sendRequest("dm.history", fields, {
      ...options,
      onReply: (data) => {
        const tracker = this.trackConversation(fields.conversation_id);
        for (const message of data.messages) tracker.add(message.seq);
      },
    });
    return messages;
  }

  /**
   * Catches this conversation up after reconnects, from `lastSeq` (default:
   * what was seen so far, or 0).
   */
  trackConversation(conversationId: string, lastSeq?: number): SeqTrackerView {
    let tracker = this.conversations.get(conversationId);
    if (!tracker) this.conversations.set(conversationId, (tracker = new SeqTracker(lastSeq ?? 0)));
    else if (lastSeq !== undefined && lastSeq > tracker.last) tracker.last = lastSeq;
    return tracker;
  }

  untrackConversation(conversationId: string): void {
    this.conversations.delete(conversationId);
  }

  async editDm(conversationId: string, messageId: string, text: string, options?: RequestOptions): Promise<void> {
    await this.request("dm.edit", { conversation_id: conversationId, message_id: messageId, text }, options);
  }

  async deleteDm(conversationId: string, messageId: string, options?: RequestOptions): Promise<void> {
    await this.request("dm.delete", { conversation_id: conversationId, message_id: messageId }, options);
  }

  async markDmRead(conversationId: string, seq: number, options?: RequestOptions): Promise<void> {
    await this.request("dm.read", { conversation_id: conversationId, seq }, options);
  }

  /** `dm.typing` without ref (fire and forget). */
  dmTyping(conversationId: string): void {
    this.notify("dm.typing", { conversation_id: conversationId });
  }

  async queryPresence(userIds: string[], options?: RequestOptions): Promise<ReplyData["presence.query"]["presence"]> {
    return (await this.request("presence.query", { user_ids: userIds }, options)).presence;
  }
}

/** What trackConversation returns: the seq bookkeeping of one conversation. */
export interface SeqTrackerView {
  readonly last: number;
  add(seq: number): boolean;
  has(seq: number): boolean;
}

function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
}
