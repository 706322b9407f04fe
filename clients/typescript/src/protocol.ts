// The meshi socket protocol, version 1, as TypeScript types and runtime
// decoders. Written by hand from protocol/README.md and the Rust crate
// `meshi-protocol`; test/fixtures.test.ts checks every fixture file against
// the decoders here, so a frame kind without a type fails that test.

/** A request's `ref`: any string or number, echoed unchanged in its reply. */
export type Ref = string | number;

// ---------------------------------------------------------------- objects

export interface UserSummary {
  id: string;
  handle: string;
  display_name: string;
}

export type RoomKind = "drop_in" | "event" | "community";

export interface Room {
  id: string;
  kind: RoomKind;
  name: string;
  topic: string | null;
  capacity: number;
  member_count: number;
  host_id: string | null;
  created_at: string;
}

export interface RoomMessage {
  room_id: string;
  seq: number;
  message_id: string;
  from: UserSummary;
  text: string;
  sent_at: string;
  client_msg_id?: string;
  edited_at?: string;
  deleted?: true;
}

export interface DmMessage {
  conversation_id: string;
  seq: number;
  message_id: string;
  from: UserSummary;
  text: string;
  sent_at: string;
  client_msg_id?: string;
  edited_at?: string;
  deleted?: true;
}

export type PresenceStatus = "online" | "offline";

export interface Presence {
  user_id: string;
  status: PresenceStatus;
  last_seen_at?: string;
}

export interface Notification {
  id: string;
  kind: string;
  data: Record<string, unknown>;
  created_at: string;
}

export type RoomClosedReason = "empty" | "host" | "moderator";
export type RoomRemovedReason = "kicked" | "access";
export type ConversationClosedReason = "blocked" | "unmatched" | "account_deleted";

export const ERROR_CODES = [
  "bad_request",
  "unauthenticated",
  "forbidden",
  "not_found",
  "conflict",
  "room_full",
  "rate_limited",
  "too_large",
  "unavailable",
  "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  retry_after_ms?: number;
}

/** WebSocket close codes the server uses. */
export const CloseCode = {
  IDLE: 1001,
  ORIGIN_NOT_ALLOWED: 1008,
  TOO_BIG: 1009,
  SERVER_RESTART: 1012,
  AUTH_FAILED: 4001,
  RATE_LIMIT_ABUSE: 4008,
  SLOW_CONSUMER: 4009,
  TOKEN_ENDED: 4010,
} as const;

/** The subprotocol the server selects. */
export const SUBPROTOCOL = "meshi.v1";

// --------------------------------------------------------------- requests

/** The fields of an op that has none. */
export type NoFields = Record<never, never>;

/** Fields of each op, without `type` and `ref`. */
export interface RequestFields {
  hello: { token: string };
  ping: NoFields;
  "auth.refresh": { token: string };
  "room.create": { name: string; topic?: string; capacity?: number };
  "room.list": NoFields;
  "room.join": { room_id: string; since_seq?: number };
  "room.leave": { room_id: string };
  "room.send": { room_id: string; text: string; client_msg_id?: string };
  "room.typing": { room_id: string };
  "room.edit": { room_id: string; message_id: string; text: string };
  "room.delete": { room_id: string; message_id: string };
  "room.kick": { room_id: string; user_id: string; ban_secs?: number; reason?: string };
  "room.close": { room_id: string };
  "rooms.watch": NoFields;
  "dm.send": { conversation_id: string; text: string; client_msg_id?: string };
  "dm.history": { conversation_id: string; after_seq?: number; before_seq?: number; limit?: number };
  "dm.edit": { conversation_id: string; message_id: string; text: string };
  "dm.delete": { conversation_id: string; message_id: string };
  "dm.read": { conversation_id: string; seq: number };
  "dm.typing": { conversation_id: string };
  "presence.query": { user_ids: string[] };
}

export type Op = keyof RequestFields;

export type Request<O extends Op = Op> = O extends Op
  ? { type: O; ref?: Ref } & RequestFields[O]
  : never;

// ---------------------------------------------------------------- replies

export interface HelloOk {
  user: UserSummary;
  session_id: string;
  heartbeat_ms: number;
}
export interface PingOk {
  server_time: string;
}
export type Empty = Record<string, never>;
export interface RoomCreated {
  room: Room;
}
export interface RoomList {
  rooms: Room[];
}
export interface RoomJoined {
  room: Room;
  members: UserSummary[];
  messages: RoomMessage[];
  last_seq: number;
  recovered: boolean;
}
export interface Sent {
  message_id: string;
  seq: number;
}
export interface DmHistoryOk {
  messages: DmMessage[];
}
export interface PresenceList {
  presence: Presence[];
}

/** The `data` of the `ok` reply to each op. */
export interface ReplyData {
  hello: HelloOk;
  ping: PingOk;
  "auth.refresh": Empty;
  "room.create": RoomCreated;
  "room.list": RoomList;
  "room.join": RoomJoined;
  "room.leave": Empty;
  "room.send": Sent;
  "room.typing": Empty;
  "room.edit": Empty;
  "room.delete": Empty;
  "room.kick": Empty;
  "room.close": Empty;
  "rooms.watch": RoomList;
  "dm.send": Sent;
  "dm.history": DmHistoryOk;
  "dm.edit": Empty;
  "dm.delete": Empty;
  "dm.read": Empty;
  "dm.typing": Empty;
  "presence.query": PresenceList;
}

export interface OkFrame<D = unknown> {
  type: "ok";
  ref: Ref;
  data: D;
}
export interface ErrorFrame {
  type: "error";
  ref?: Ref;
  error: ErrorBody;
}

// ----------------------------------------------------------------- pushes

export interface PushFields {
  "room.message": RoomMessage;
  "room.message_edited": { room_id: string; message_id: string; seq: number; text: string; edited_at: string };
  "room.message_deleted": { room_id: string; message_id: string; seq: number; deleted_by: string };
  "room.member_joined": { room_id: string; user: UserSummary };
  "room.member_left": { room_id: string; user_id: string };
  "room.typing": { room_id: string; user_id: string };
  "room.closed": { room_id: string; reason: RoomClosedReason };
  "room.removed": { room_id: string; reason: RoomRemovedReason; until?: string };
  "rooms.changed": { room: Room; room_id?: undefined; closed?: undefined } | { room?: undefined; room_id: string; closed: true };
  "dm.message": DmMessage;
  "dm.message_edited": { conversation_id: string; message_id: string; seq: number; text: string; edited_at: string };
  "dm.message_deleted": { conversation_id: string; message_id: string; seq: number };
  "conversation.closed": { conversation_id: string; reason: ConversationClosedReason };
  "dm.read": { conversation_id: string; user_id: string; seq: number };
  "dm.typing": { conversation_id: string; user_id: string };
  presence: Presence;
  notification: { notification: Notification };
  reconnect: { reason: string; retry_after_ms: number };
}

export type PushType = keyof PushFields;

export type Push<T extends PushType = PushType> = T extends PushType ? { type: T } & PushFields[T] : never;

export type ServerFrame = OkFrame | ErrorFrame | Push;

// --------------------------------------------------------------- decoders

/** Thrown by the decoders when a value does not have the expected shape. */
export class DecodeError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = "DecodeError";
  }
}

type Check = (value: unknown, path: string) => void;

const fail = (path: string, message: string): never => {
  throw new DecodeError(path, message);
};

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const str: Check = (v, p) => {
  if (typeof v !== "string") fail(p, "expected a string");
};
const uint: Check = (v, p) => {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) fail(p, "expected a non-negative integer");
};
const bool: Check = (v, p) => {
  if (typeof v !== "boolean") fail(p, "expected a boolean");
};
const literal =
  (...values: unknown[]): Check =>
  (v, p) => {
    if (!values.includes(v)) fail(p, `expected one of ${values.map((x) => JSON.stringify(x)).join(", ")}`);
  };
const nullable =
  (inner: Check): Check =>
  (v, p) => {
    if (v !== null) inner(v, p);
  };
const array =
  (inner: Check): Check =>
  (v, p) => {
    if (!Array.isArray(v)) return fail(p, "expected an array");
    v.forEach((item, i) => inner(item, `${p}[${i}]`));
  };
const anyObject: Check = (v, p) => {
  if (!isObject(v)) fail(p, "expected an object");
};
const refCheck: Check = (v, p) => {
  if (typeof v !== "string" && typeof v !== "number") fail(p, "expected a string or number");
};

/** Field checks; a key ending in `?` is optional (absent or undefined). */
type Shape = Record<string, Check>;

const object =
  (shape: Shape): Check =>
  (v, p) => {
    if (!isObject(v)) return fail(p, "expected an object");
    for (const [key, check] of Object.entries(shape)) {
      const optional = key.endsWith("?");
      const name = optional ? key.slice(0, -1) : key;
      const value = v[name];
      if (value === undefined) {
        if (!optional) fail(`${p}.${name}`, "is missing");
        continue;
      }
      check(value, `${p}.${name}`);
    }
  };

const user = object({ id: str, handle: str, display_name: str });
const roomKind = literal("drop_in", "event", "community");
const room = object({
  id: str,
  kind: roomKind,
  name: str,
  topic: nullable(str),
  capacity: uint,
  member_count: uint,
  host_id: nullable(str),
  created_at: str,
});
const messageCommon: Shape = {
  seq: uint,
  message_id: str,
  from: user,
  text: str,
  sent_at: str,
  "client_msg_id?": str,
  "edited_at?": str,
  "deleted?": literal(true),
};
const roomMessage = object({ room_id: str, ...messageCommon });
const dmMessage = object({ conversation_id: str, ...messageCommon });
const presenceShape: Shape = { user_id: str, status: literal("online", "offline"), "last_seen_at?": str };
const presence = object(presenceShape);
const notification = object({ id: str, kind: str, data: anyObject, created_at: str });
const errorBody = object({ code: literal(...ERROR_CODES), message: str, "retry_after_ms?": uint });
const empty = anyObject;

const pushShapes: { [T in PushType]: Check } = {
  "room.message": object({ room_id: str, ...messageCommon }),
  "room.message_edited": object({ room_id: str, message_id: str, seq: uint, text: str, edited_at: str }),
  "room.message_deleted": object({ room_id: str, message_id: str, seq: uint, deleted_by: str }),
  "room.member_joined": object({ room_id: str, user }),
  "room.member_left": object({ room_id: str, user_id: str }),
  "room.typing": object({ room_id: str, user_id: str }),
  "room.closed": object({ room_id: str, reason: literal("empty", "host", "moderator") }),
  "room.removed": object({ room_id: str, reason: literal("kicked", "access"), "until?": str }),
  "rooms.changed": (v, p) => {
    if (isObject(v) && v.room !== undefined) return object({ room })(v, p);
    object({ room_id: str, closed: literal(true) })(v, p);
  },
  "dm.message": object({ conversation_id: str, ...messageCommon }),
  "dm.message_edited": object({ conversation_id: str, message_id: str, seq: uint, text: str, edited_at: str }),
  "dm.message_deleted": object({ conversation_id: str, message_id: str, seq: uint }),
  "conversation.closed": object({ conversation_id: str, reason: literal("blocked", "unmatched", "account_deleted") }),
  "dm.read": object({ conversation_id: str, user_id: str, seq: uint }),
  "dm.typing": object({ conversation_id: str, user_id: str }),
  presence: object(presenceShape),
  notification: object({ notification }),
  reconnect: object({ reason: str, retry_after_ms: uint }),
};

const replyShapes: { [O in Op]: Check } = {
  hello: object({ user, session_id: str, heartbeat_ms: uint }),
  ping: object({ server_time: str }),
  "auth.refresh": empty,
  "room.create": object({ room }),
  "room.list": object({ rooms: array(room) }),
  "room.join": object({
    room,
    members: array(user),
    messages: array(roomMessage),
    last_seq: uint,
    recovered: bool,
  }),
  "room.leave": empty,
  "room.send": object({ message_id: str, seq: uint }),
  "room.typing": empty,
  "room.edit": empty,
  "room.delete": empty,
  "room.kick": empty,
  "room.close": empty,
  "rooms.watch": object({ rooms: array(room) }),
  "dm.send": object({ message_id: str, seq: uint }),
  "dm.history": object({ messages: array(dmMessage) }),
  "dm.edit": empty,
  "dm.delete": empty,
  "dm.read": empty,
  "dm.typing": empty,
  "presence.query": object({ presence: array(presence) }),
};

const requestShapes: { [O in Op]: Shape } = {
  hello: { token: str },
  ping: {},
  "auth.refresh": { token: str },
  "room.create": { name: str, "topic?": str, "capacity?": uint },
  "room.list": {},
  "room.join": { room_id: str, "since_seq?": uint },
  "room.leave": { room_id: str },
  "room.send": { room_id: str, text: str, "client_msg_id?": str },
  "room.typing": { room_id: str },
  "room.edit": { room_id: str, message_id: str, text: str },
  "room.delete": { room_id: str, message_id: str },
  "room.kick": { room_id: str, user_id: str, "ban_secs?": uint, "reason?": str },
  "room.close": { room_id: str },
  "rooms.watch": {},
  "dm.send": { conversation_id: str, text: str, "client_msg_id?": str },
  "dm.history": { conversation_id: str, "after_seq?": uint, "before_seq?": uint, "limit?": uint },
  "dm.edit": { conversation_id: str, message_id: str, text: str },
  "dm.delete": { conversation_id: str, message_id: str },
  "dm.read": { conversation_id: str, seq: uint },
  "dm.typing": { conversation_id: str },
  "presence.query": { user_ids: array(str) },
};

/** Every op name. */
export const OPS = Object.keys(requestShapes) as Op[];
/** Every push name. */
export const PUSH_TYPES = Object.keys(pushShapes) as PushType[];

export const isOp = (name: unknown): name is Op =>
  typeof name === "string" && Object.prototype.hasOwnProperty.call(requestShapes, name);
export const isPushType = (name: unknown): name is PushType =>
  typeof name === "string" && Object.prototype.hasOwnProperty.call(pushShapes, name);

/**
 * Reads one server frame. Throws DecodeError when `value` is not a frame this
 * library knows: an unknown `type`, a missing field or a field of the wrong
 * type. Unknown extra fields are allowed, as the protocol asks.
 */
export function decodeServerFrame(value: unknown): ServerFrame {
  if (!isObject(value)) return fail("frame", "expected an object");
  const type = value.type;
  if (type === "ok") {
    object({ ref: refCheck, data: anyObject })(value, "frame");
    return value as unknown as OkFrame;
  }
  if (type === "error") {
    object({ "ref?": refCheck, error: errorBody })(value, "frame");
    return value as unknown as ErrorFrame;
  }
  if (!isPushType(type)) return fail("frame.type", `unknown server frame type ${JSON.stringify(type)}`);
  if ("ref" in value) fail("frame.ref", "a push never carries a ref");
  pushShapes[type](value, "frame");
  return value as unknown as Push;
}

/** Checks the `data` of an `ok` reply against the shape of `op`'s reply. */
export function decodeReply<O extends Op>(op: O, data: unknown): ReplyData[O] {
  replyShapes[op](data, `${op} reply`);
  return data as ReplyData[O];
}

/** Reads one client request (as the server would accept it). */
export function decodeRequest(value: unknown): Request {
  if (!isObject(value)) return fail("request", "expected an object");
  const type = value.type;
  if (!isOp(type)) return fail("request.type", `unknown op ${JSON.stringify(type)}`);
  object({ "ref?": refCheck, ...requestShapes[type] })(value, "request");
  return value as unknown as Request;
}

/** Type guard form of decodeServerFrame. */
export function isServerFrame(value: unknown): value is ServerFrame {
  try {
    decodeServerFrame(value);
    return true;
  } catch {
    return false;
  }
}

/** Type guard form of decodeRequest. */
export function isRequest(value: unknown): value is Request {
  try {
    decodeRequest(value);
    return true;
  } catch {
    return false;
  }
}

/** Narrows a push to one type. */
export function isPush<T extends PushType>(frame: ServerFrame, type: T): frame is Push<T> {
  return frame.type === type;
}
