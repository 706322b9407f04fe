// Typed helpers for the REST API v1 (`/api/v1`), written from the OpenAPI
// document the server serves at /api/v1/openapi.json and the route table in
// the project README.

import { MeshiError } from "./errors.js";
import type { DmMessage, Notification, Room, UserSummary } from "./protocol.js";

// ----------------------------------------------------------------- types

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface PageQuery {
  limit?: number;
  cursor?: string;
}

export type Role = "member" | "moderator" | "admin";

export interface Profile {
  id: string;
  handle: string;
  display_name: string;
  bio: string;
  tags: string[];
  role: Role | string;
  created_at: string;
}

export interface ListedProfile extends Profile {
  suspended_until?: string | null;
}

export interface TokenAndUser {
  token: string;
  user: Profile;
}

export interface ProfilePatch {
  display_name?: string;
  bio?: string;
  tags?: string[];
}

export interface SessionItem {
  id: string;
  created_at: string;
  expires_at: string;
  /** The session this request came with. */
  current: boolean;
}

/** `GET /me/export`: everything stored about the caller. */
export interface AccountExport {
  profile: Record<string, unknown>;
  sessions: unknown[];
  cards: unknown[];
  interests: unknown[];
  interests_received: unknown[];
  matches: unknown[];
  conversations: unknown[];
  rsvps: unknown[];
  hosted_events: unknown[];
  memberships: unknown[];
  owned_communities: unknown[];
  blocks: unknown[];
  notifications: unknown[];
  reports: unknown[];
  [key: string]: unknown;
}

export interface Card {
  id: string;
  owner_id: string;
  owner: UserSummary;
  title: string;
  body: string;
  tags: string[];
  status: "open" | "closed" | string;
  created_at: string;
  updated_at: string;
}

export interface NewCard {
  title: string;
  body?: string;
  tags?: string[];
}

export interface CardPatch {
  title?: string;
  body?: string;
  tags?: string[];
  status?: string;
}

export interface CardQuery extends PageQuery {
  tag?: string;
  q?: string;
  owner_id?: string;
}

export interface Interest {
  user: UserSummary;
  created_at: string;
}

export interface Match {
  id: string;
  user: UserSummary;
  card_id: string;
  conversation_id: string;
  created_at: string;
}

export interface ConversationItem {
  id: string;
  other_user: UserSummary;
  last_message?: DmMessage | null;
  unread_count: number;
  last_activity_at: string;
}

export interface HistoryQuery {
  after_seq?: number;
  before_seq?: number;
  limit?: number;
}

export interface Event {
  id: string;
  host_id: string;
  host: UserSummary;
  title: string;
  description: string;
  starts_at: string;
  ends_at?: string | null;
  venue?: string | null;
  online_url?: string | null;
  capacity: number;
  tags: string[];
  status: "scheduled" | "cancelled" | string;
  room_id: string;
  going_count: number;
  waitlist_count: number;
  created_at: string;
  updated_at: string;
}

export type RsvpStatus = "going" | "waitlisted";

export interface EventDetail extends Event {
  my_rsvp: RsvpStatus | null;
}

export interface NewEvent {
  title?: string;
  description?: string;
  starts_at: string;
  ends_at?: string | null;
  venue?: string | null;
  online_url?: string | null;
  capacity: number;
  tags?: string[];
}

export type EventPatch = Partial<Omit<NewEvent, "starts_at" | "capacity">> & {
  starts_at?: string;
  capacity?: number;
};

export interface EventQuery extends PageQuery {
  from?: string;
  tag?: string;
}

export interface RsvpAnswer {
  status: RsvpStatus;
  waitlist_position?: number | null;
}

export interface Attendee {
  user: UserSummary;
  status: RsvpStatus;
  position: number;
  rsvp_at: string;
}

export interface Community {
  id: string;
  owner_id: string;
  name: string;
  description: string;
  tags: string[];
  member_count: number;
  room_id: string;
  is_member?: boolean | null;
  created_at: string;
}

export interface NewCommunity {
  name: string;
  description?: string;
  tags?: string[];
}

export interface CommunityQuery extends PageQuery {
  q?: string;
  tag?: string;
}

export interface Member {
  user: UserSummary;
  joined_at: string;
}

export interface Blocked {
  user: UserSummary;
  created_at: string;
}

export type ReportKind = "user" | "card" | "room_message" | "dm_message" | string;

export interface NewReport {
  kind: ReportKind;
  target_id: string;
  reason: string;
  room_id?: string | null;
  conversation_id?: string | null;
}

export interface Report {
  id: string;
  kind: ReportKind;
  target_id: string;
  reason: string;
  excerpt: string;
  reporter: UserSummary;
  status: "open" | "resolved" | string;
  room_id?: string | null;
  conversation_id?: string | null;
  action?: string | null;
  note?: string | null;
  resolved_by?: string | null;
  created_at: string;
}

export interface AuditEntry {
  id: string;
  actor_id: string | null;
  action: string;
  target: string;
  data: unknown;
  created_at: string;
}

export interface AdminUserQuery extends PageQuery {
  q?: string;
  role?: Role;
  suspended?: boolean;
}

// ---------------------------------------------------------------- client

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface RestOptions {
  /** The server's origin, e.g. `https://chat.example.com`; `/api/v1` is added. */
  baseUrl: string;
  token?: string;
  /** Defaults to `globalThis.fetch`. */
  fetch?: FetchLike;
  /** Per-request timeout. Default 10 000 ms. */
  timeoutMs?: number;
}

type Query = Record<string, string | number | boolean | undefined | null>;

const enc = encodeURIComponent;

/** The REST API v1. Every method throws MeshiError on an error answer. */
export class MeshiRest {
  token: string | undefined;
  private readonly base: string;
  private readonly fetchFn: FetchLike;
  private readonly timeoutMs: number;

  constructor(options: RestOptions) {
    this.base = options.baseUrl.replace(/\/+$/, "") + "/api/v1";
    this.token = options.token;
    const f = options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (!f) throw new Error("no fetch available: pass the fetch option");
    this.fetchFn = f;
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Sends one request; resolves with the JSON answer, or undefined for 204. */
  async call<T>(method: string, path: string, options: { body?: unknown; query?: Query; auth?: boolean } = {}): Promise<T> {
    let url = this.base + path;
    if (options.query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(options.query)) {
        if (value !== undefined && value !== null) params.set(key, String(value));
      }
      const text = params.toString();
      if (text) url += `?${text}`;
    }
    const headers: Record<string, string> = { accept: "application/json" };
    if (options.auth !== false && this.token) headers.authorization = `Bearer ${this.token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    let response: Response;
    try {
      response = await this.fetchFn(url, { method, headers, body, signal: controller.signal });
    } catch (error) {
      if (controller.signal.aborted) {
        throw new MeshiError("timeout", `${method} ${path}: no answer within ${this.timeoutMs} ms`);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
    const text = await response.text();
    if (!response.ok) {
      let code = "internal";
      let message = `${method} ${path}: HTTP ${response.status}`;
      let retryAfterMs: number | undefined;
      try {
        const parsed = JSON.parse(text) as { error?: { code?: string; message?: string; retry_after_ms?: number } };
        if (parsed.error?.code) code = parsed.error.code;
        if (parsed.error?.message) message = parsed.error.message;
        retryAfterMs = parsed.error?.retry_after_ms;
      } catch {
        /* not JSON */
      }
      throw new MeshiError(code, message, retryAfterMs, response.status);
    }
    if (response.status === 204 || text === "") return undefined as T;
    return JSON.parse(text) as T;
  }

  // ------------------------------------------------------------ accounts

  /** Registers and keeps the new token. */
  async register(body: { handle: string; password: string; display_name: string }): Promise<TokenAndUser> {
    const answer = await this.call<TokenAndUser>("POST", "/auth/register", { body, auth: false });
    this.token = answer.token;
    return answer;
  }

  /** Logs in and keeps the new token. */
  async login(body: { handle: string; password: string }): Promise<TokenAndUser> {
    const answer = await this.call<TokenAndUser>("POST", "/auth/login", { body, auth: false });
    this.token = answer.token;
    return answer;
  }

  /** Revokes the token; its sockets close with 4010. */
  async logout(): Promise<void> {
    await this.call<void>("POST", "/auth/logout");
    this.token = undefined;
  }

  /** Every other session ends (their sockets close with 4010). */
  changePassword(body: { current_password: string; new_password: string }): Promise<void> {
    return this.call("POST", "/auth/password", { body });
  }

  me(): Promise<Profile> {
    return this.call("GET", "/me");
  }

  updateMe(patch: ProfilePatch): Promise<Profile> {
    return this.call("PATCH", "/me", { body: patch });
  }

  /** Erases the account (`password` is required for an account with one). */
  deleteMe(body: { password?: string } = {}): Promise<void> {
    return this.call("DELETE", "/me", { body });
  }

  exportMe(): Promise<AccountExport> {
    return this.call("GET", "/me/export");
  }

  sessions(query: PageQuery = {}): Promise<Page<SessionItem>> {
    return this.call("GET", "/me/sessions", { query: { ...query } });
  }

  endSession(id: string): Promise<void> {
    return this.call("DELETE", `/me/sessions/${enc(id)}`);
  }

  endOtherSessions(): Promise<void> {
    return this.call("DELETE", "/me/sessions");
  }

  user(id: string): Promise<Profile> {
    return this.call("GET", `/users/${enc(id)}`);
  }

  // --------------------------------------------------------------- cards

  createCard(body: NewCard): Promise<Card> {
    return this.call("POST", "/cards", { body });
  }

  cards(query: CardQuery = {}): Promise<Page<Card>> {
    return this.call("GET", "/cards", { query: { ...query } });
  }

  card(id: string): Promise<Card> {
    return this.call("GET", `/cards/${enc(id)}`);
  }

  updateCard(id: string, patch: CardPatch): Promise<Card> {
    return this.call("PATCH", `/cards/${enc(id)}`, { body: patch });
  }

  deleteCard(id: string): Promise<void> {
    return this.call("DELETE", `/cards/${enc(id)}`);
  }

  /** Presses *interested* (idempotent). */
  showInterest(cardId: string): Promise<void> {
    return this.call("PUT", `/cards/${enc(cardId)}/interest`);
  }

  withdrawInterest(cardId: string): Promise<void> {
    return this.call("DELETE", `/cards/${enc(cardId)}/interest`);
  }

  /** Who is interested (the card's owner only). */
  interests(cardId: string, query: PageQuery = {}): Promise<Page<Interest>> {
    return this.call("GET", `/cards/${enc(cardId)}/interests`, { query: { ...query } });
  }

  // ------------------------------------------------------------- matches

  /** The card's owner matches an interested user; answers the match with its conversation. */
  async match(cardId: string, userId: string): Promise<Match> {
    const answer = await this.call<{ match: Match }>("POST", `/cards/${enc(cardId)}/matches`, {
      body: { user_id: userId },
    });
    return answer.match;
  }

  matches(query: PageQuery = {}): Promise<Page<Match>> {
    return this.call("GET", "/matches", { query: { ...query } });
  }

  /** Unmatch: the pair's conversation closes for both. */
  unmatch(matchId: string): Promise<void> {
    return this.call("DELETE", `/matches/${enc(matchId)}`);
  }

  // ------------------------------------------------------- conversations

  conversations(query: PageQuery = {}): Promise<Page<ConversationItem>> {
    return this.call("GET", "/conversations", { query: { ...query } });
  }

  async messages(conversationId: string, query: HistoryQuery = {}): Promise<DmMessage[]> {
    const answer = await this.call<{ items: DmMessage[] }>("GET", `/conversations/${enc(conversationId)}/messages`, {
      query: { ...query },
    });
    return answer.items;
  }

  // -------------------------------------------------------------- events

  createEvent(body: NewEvent): Promise<Event> {
    return this.call("POST", "/events", { body });
  }

  events(query: EventQuery = {}): Promise<Page<Event>> {
    return this.call("GET", "/events", { query: { ...query } });
  }

  event(id: string): Promise<EventDetail> {
    return this.call("GET", `/events/${enc(id)}`);
  }

  updateEvent(id: string, patch: EventPatch): Promise<Event> {
    return this.call("PATCH", `/events/${enc(id)}`, { body: patch });
  }

  /** Cancels the event (the host only); attendees are notified. */
  cancelEvent(id: string): Promise<void> {
    return this.call("DELETE", `/events/${enc(id)}`);
  }

  /** Takes a seat, or a place on the waitlist when the event is full. */
  rsvp(eventId: string): Promise<RsvpAnswer> {
    return this.call("PUT", `/events/${enc(eventId)}/rsvp`);
  }

  /** Leaves the event; the seat goes to the first on the waitlist. */
  cancelRsvp(eventId: string): Promise<void> {
    return this.call("DELETE", `/events/${enc(eventId)}/rsvp`);
  }

  attendees(eventId: string, query: PageQuery & { status?: RsvpStatus } = {}): Promise<Page<Attendee>> {
    return this.call("GET", `/events/${enc(eventId)}/attendees`, { query: { ...query } });
  }

  // --------------------------------------------------------- communities

  createCommunity(body: NewCommunity): Promise<Community> {
    return this.call("POST", "/communities", { body });
  }

  communities(query: CommunityQuery = {}): Promise<Page<Community>> {
    return this.call("GET", "/communities", { query: { ...query } });
  }

  community(id: string): Promise<Community> {
    return this.call("GET", `/communities/${enc(id)}`);
  }

  joinCommunity(id: string): Promise<void> {
    return this.call("PUT", `/communities/${enc(id)}/membership`);
  }

  leaveCommunity(id: string): Promise<void> {
    return this.call("DELETE", `/communities/${enc(id)}/membership`);
  }

  members(communityId: string, query: PageQuery = {}): Promise<Page<Member>> {
    return this.call("GET", `/communities/${enc(communityId)}/members`, { query: { ...query } });
  }

  // ------------------------------------------------------- notifications

  notifications(query: PageQuery & { unread?: boolean } = {}): Promise<Page<Notification>> {
    return this.call("GET", "/notifications", { query: { ...query } });
  }

  /** Moves the read marker forward to `upToId`. */
  markNotificationsRead(upToId: string): Promise<void> {
    return this.call("POST", "/notifications/read", { body: { up_to_id: upToId } });
  }

  // ------------------------------------------------------ blocks, rooms

  block(userId: string): Promise<void> {
    return this.call("POST", `/users/${enc(userId)}/block`);
  }

  unblock(userId: string): Promise<void> {
    return this.call("DELETE", `/users/${enc(userId)}/block`);
  }

  blocks(query: PageQuery = {}): Promise<Page<Blocked>> {
    return this.call("GET", "/me/blocks", { query: { ...query } });
  }

  rooms(query: PageQuery = {}): Promise<Page<Room>> {
    return this.call("GET", "/rooms", { query: { ...query } });
  }

  // ------------------------------------------------------------- reports

  async report(body: NewReport): Promise<Report> {
    return (await this.call<{ report: Report }>("POST", "/reports", { body })).report;
  }

  // --------------------------------------------------------------- admin

  /** Admins only. */
  setRole(userId: string, role: Role): Promise<void> {
    return this.call("PUT", `/admin/users/${enc(userId)}/role`, { body: { role } });
  }

  /** Closes a room for everyone inside (moderators and admins). */
  adminCloseRoom(roomId: string): Promise<void> {
    return this.call("DELETE", `/admin/rooms/${enc(roomId)}`);
  }

  /** Admins only. */
  audit(query: PageQuery = {}): Promise<Page<AuditEntry>> {
    return this.call("GET", "/admin/audit", { query: { ...query } });
  }

  suspend(userId: string, body: { reason: string; until?: string | null }): Promise<void> {
    return this.call("POST", `/admin/users/${enc(userId)}/suspend`, { body });
  }

  unsuspend(userId: string): Promise<void> {
    return this.call("DELETE", `/admin/users/${enc(userId)}/suspend`);
  }

  adminUsers(query: AdminUserQuery = {}): Promise<Page<ListedProfile>> {
    return this.call("GET", "/admin/users", { query: { ...query } });
  }

  reports(query: PageQuery & { status?: "open" | "resolved" } = {}): Promise<Page<Report>> {
    return this.call("GET", "/admin/reports", { query: { ...query } });
  }

  resolveReport(id: string, body: { action: string; note?: string | null }): Promise<Report> {
    return this.call("POST", `/admin/reports/${enc(id)}/resolve`, { body });
  }

  /** The OpenAPI document (no token needed). */
  openapi(): Promise<Record<string, unknown>> {
    return this.call("GET", "/openapi.json", { auth: false });
  }
}
