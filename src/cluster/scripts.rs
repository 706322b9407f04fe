//! The Lua scripts that keep a cluster's shared state in Redis.
//!
//! Each runs atomically, so a room's sequence numbers, members, capacity
//! and `client_msg_id`s change in one place and one order for every node,
//! and the events a script publishes leave Redis in that same order.
//!
//! Every script gets `ARGV[1]` the key prefix, `ARGV[2]` the node id and,
//! for room scripts, `ARGV[3]` the room id; the rest follow. Room keys are
//! derived from those (`<prefix>:r:<room>` and `|`-suffixed siblings);
//! room ids never contain `|`, so no two rooms' keys meet. The layout is
//! described in `cluster/mod.rs`.
//!
//! Scripts write no JSON of their own: each frame they publish is one a
//! room keeps in its hash, made from the protocol's types in `frames`, or
//! such a template with its one hole filled.

use std::sync::LazyLock;

use redis::Script;

/// Shared by the room scripts: key names, publishing, the directory view,
/// a member leaving, a room closing.
const ROOM_PRELUDE: &str = r#"
local P, NODE, room = ARGV[1], ARGV[2], ARGV[3]
local base = P .. ':r:' .. room
local K = {
  meta = base, mem = base .. '|m', at = base .. '|n', cnt = base .. '|c',
  hist = base .. '|h', cid = base .. '|d', cidq = base .. '|q', ban = base .. '|b',
}
local ROOMS, EMPTY = P .. ':rooms', P .. ':empty'
local ROOM_CH, DIR_CH = P .. ':room:' .. room, P .. ':dir'

-- Publishes a room event at the room's next position; `seq` is the
-- message seq, or 0 for other events.
local function publish(seq, frame)
  local ev = redis.call('HINCRBY', K.meta, 'ev', 1)
  redis.call('PUBLISH', ROOM_CH, '\1P\0' .. ev .. ':' .. seq .. ' ' .. frame)
end

local function view()
  local parts = redis.call('HMGET', K.meta, 'vh', 'vt')
  return parts[1] .. redis.call('HLEN', K.mem) .. parts[2]
end

-- Drop-in rooms are listed for everyone; event and community rooms are not.
local function announce()
  local meta = redis.call('HMGET', K.meta, 'kind', 'dh', 'dt')
  if meta[1] == 'drop_in' then
    redis.call('PUBLISH', DIR_CH, '\1P\0' .. '0:0 ' .. meta[2] .. redis.call('HLEN', K.mem) .. meta[3])
  end
end

local function member_left(user)
  local template = redis.call('HMGET', K.meta, 'lh', 'lt')
  publish(0, template[1] .. user .. template[2])
end

local function close(reason)
  local meta = redis.call('HMGET', K.meta, 'kind', 'c:' .. reason, 'dc')
  local ev = redis.call('HINCRBY', K.meta, 'ev', 1)
  -- Kind X: the last event of the room; nodes forget the room after it.
  redis.call('PUBLISH', ROOM_CH, '\1X\0' .. ev .. ':0 ' .. meta[2])
  if meta[1] == 'drop_in' then
    redis.call('PUBLISH', DIR_CH, '\1P\0' .. '0:0 ' .. meta[3])
  end
  local host = redis.call('HGET', K.meta, 'host')
  if host then redis.call('SREM', P .. ':u:' .. host .. ':hosts', room) end
  redis.call('DEL', K.meta, K.mem, K.at, K.cnt, K.hist, K.cid, K.cidq, K.ban)
  redis.call('ZREM', ROOMS, room)
  redis.call('ZREM', EMPTY, room)
end

-- `node` no longer holds `user` in the room; the user leaves once no node
-- does. An emptied drop-in room closes now or after the grace.
local function release(user, node, close_at_once, now)
  if redis.call('HDEL', K.at, user .. '@' .. node) == 0 then return end
  if redis.call('HINCRBY', K.cnt, user, -1) > 0 then return end
  redis.call('HDEL', K.cnt, user)
  redis.call('HDEL', K.mem, user)
  member_left(user)
  announce()
  if redis.call('HLEN', K.mem) == 0 and redis.call('HGET', K.meta, 'kind') == 'drop_in' then
    if close_at_once == '1' then
      close('empty')
    else
      redis.call('ZADD', EMPTY, now, room)
    end
  end
end

local function hold(user, summary)
  redis.call('HSET', K.mem, user, summary)
  if redis.call('HSETNX', K.at, user .. '@' .. NODE, 1) == 1 then
    redis.call('HINCRBY', K.cnt, user, 1)
  end
  redis.call('SADD', P .. ':node:' .. NODE .. ':rooms', room)
end

-- Writes a new room's hash from ARGV 4..9, as OPEN describes them: its
-- kind, its frames (a JSON object of hash fields, from
-- `frames::room_fields`), capacity, creation time, seq and position floors.
local function store_room()
  local kind = ARGV[4]
  local fields = {'kind', kind, 'cap', ARGV[6], 'created', ARGV[7], 'seq', ARGV[8], 'ev', ARGV[9]}
  for field, value in pairs(cjson.decode(ARGV[5])) do
    fields[#fields + 1] = field
    fields[#fields + 1] = value
  end
  redis.call('HSET', K.meta, unpack(fields))
  if kind == 'drop_in' then redis.call('ZADD', ROOMS, ARGV[7], room) end
end

-- Opens the room, with its creator (ARGV 10, 11) inside if given.
local function open()
  store_room()
  if ARGV[10] then hold(ARGV[10], ARGV[11]) end
  announce()
end
"#;

fn room_script(name: &'static str, body: &str) -> Lua {
    Lua::new(name, &format!("{ROOM_PRELUDE}\n{body}"))
}

/// A script and the name it is measured by (`meshi_redis_seconds{name}`).
pub struct Lua {
    pub name: &'static str,
    pub script: Script,
}

impl Lua {
    fn new(name: &'static str, code: &str) -> Self {
        Lua {
            name,
            script: Script::new(code),
        }
    }
}

/// ARGV 4..: kind, the room's frames (JSON), capacity, created (ms), seq
/// floor, position floor, then the creator (user id, summary JSON) or
/// nothing. Opens the
/// room unless it is open; the seq floor keeps a room reopened after Redis
/// lost it from reusing numbers. Returns the room's view.
pub static OPEN: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "open",
        r#"
if redis.call('EXISTS', K.meta) == 1 then return view() end
open()
return view()
"#,
    )
});

/// A user opening a drop-in room they host. ARGV 4..11 as for OPEN, the
/// creator given; then the most rooms one user hosts at once and the most
/// they create per minute (0: no limit), and now (ms). Returns `{"ok"}`,
/// `{"hosted"}` when they host the most already, or `{"rate", wait_ms}`.
/// Hosted rooms are `<p>:u:<user>:hosts`, which a room leaves as it
/// closes; ids whose room is gone anyway (Redis lost it) are dropped
/// before counting. Recent creates are `<p>:u:<user>:created`, scored by
/// time, so the limit holds in any sliding minute.
pub static CREATE: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "create",
        r#"
local user, max_hosted, per_min, now = ARGV[10], tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local hosts = P .. ':u:' .. user .. ':hosts'
local created = P .. ':u:' .. user .. ':created'
if max_hosted > 0 then
  for _, id in ipairs(redis.call('SMEMBERS', hosts)) do
    if redis.call('EXISTS', P .. ':r:' .. id) == 0 then redis.call('SREM', hosts, id) end
  end
  if redis.call('SCARD', hosts) >= max_hosted then return {'hosted'} end
end
if per_min > 0 then
  redis.call('ZREMRANGEBYSCORE', created, '-inf', now - 60000)
  if redis.call('ZCARD', created) >= per_min then
    local oldest = redis.call('ZRANGE', created, 0, 0, 'WITHSCORES')
    return {'rate', tostring(tonumber(oldest[2]) + 60000 - now)}
  end
end
open()
redis.call('HSET', K.meta, 'host', user)
redis.call('SADD', hosts, room)
if per_min > 0 then
  redis.call('ZADD', created, now, room)
  redis.call('PEXPIRE', created, 60000)
end
return {'ok'}
"#,
    )
});

/// ARGV 4..: user, summary JSON, member_joined frame, since_seq or "",
/// how many latest messages to return without recovery, now (ms). Returns
/// `{"gone"}`, `{"full"}`, `{"banned", until_ms}`, or `{"ok", last_seq,
/// position, view, recovered, created, member count, members...,
/// messages...}`.
pub static JOIN: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "join",
        r#"
if redis.call('EXISTS', K.meta) == 0 then return {'gone'} end
local user = ARGV[4]
local banned = redis.call('HGET', K.ban, user)
if banned then
  if tonumber(banned) > tonumber(ARGV[9]) then return {'banned', banned} end
  redis.call('HDEL', K.ban, user)
end
if redis.call('HEXISTS', K.cnt, user) == 0 then
  local cap = tonumber(redis.call('HGET', K.meta, 'cap'))
  if redis.call('HLEN', K.mem) >= cap then return {'full'} end
  hold(user, ARGV[5])
  publish(0, ARGV[6])
  redis.call('ZREM', EMPTY, room)
  announce()
else
  hold(user, ARGV[5])
end
local meta = redis.call('HMGET', K.meta, 'seq', 'ev', 'created')
local seq = tonumber(meta[1])
local len = redis.call('LLEN', K.hist)
local oldest = seq - len + 1
local since = tonumber(ARGV[7])
local messages, recovered
if since and since <= seq and since + 1 >= oldest then
  messages = redis.call('LRANGE', K.hist, since + 1 - oldest, -1)
  recovered = '1'
else
  messages = redis.call('LRANGE', K.hist, -tonumber(ARGV[8]), -1)
  recovered = '0'
end
local members = redis.call('HVALS', K.mem)
local out = {'ok', meta[1], meta[2], view(), recovered, meta[3], tostring(#members)}
for _, m in ipairs(members) do out[#out + 1] = m end
for _, m in ipairs(messages) do out[#out + 1] = m end
return out
"#,
    )
});

/// ARGV 4..: user, frame head, frame tail (the frame is head, seq, tail),
/// message id, client_msg_id or "", messages kept. Returns `{"gone"}`,
/// `{"forbidden"}`, `{"ok", seq, message_id}` or, for a repeated
/// client_msg_id, the first send's `{"ok", seq, message_id}`.
pub static SEND: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "send",
        r#"
if redis.call('EXISTS', K.meta) == 0 then return {'gone'} end
local user = ARGV[4]
if redis.call('HEXISTS', K.mem, user) == 0 then return {'forbidden'} end
local cid_key = user .. '|' .. ARGV[8]
if ARGV[8] ~= '' then
  local first = redis.call('HGET', K.cid, cid_key)
  if first then
    local bar = string.find(first, '|', 1, true)
    return {'ok', string.sub(first, 1, bar - 1), string.sub(first, bar + 1)}
  end
end
local keep = tonumber(ARGV[9])
local seq = redis.call('HINCRBY', K.meta, 'seq', 1)
local frame = ARGV[5] .. seq .. ARGV[6]
redis.call('RPUSH', K.hist, frame)
redis.call('LTRIM', K.hist, -keep, -1)
publish(seq, frame)
if ARGV[8] ~= '' then
  redis.call('HSET', K.cid, cid_key, seq .. '|' .. ARGV[7])
  redis.call('RPUSH', K.cidq, cid_key)
  if redis.call('LLEN', K.cidq) > keep then
    redis.call('HDEL', K.cid, redis.call('LPOP', K.cidq))
  end
end
return {'ok', tostring(seq), ARGV[7]}
"#,
    )
});

/// A message revised in the history window (edited or deleted). ARGV
/// 4..: the message's frame as the history holds it, its revised frame,
/// and the event telling members. The history entry is replaced only if
/// it is still exactly as the caller read it. Returns `{"gone"}`,
/// `{"stale"}` or `{"ok"}`.
pub static REPLACE: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "replace",
        r#"
if redis.call('EXISTS', K.meta) == 0 then return {'gone'} end
local kept = redis.call('LRANGE', K.hist, 0, -1)
for i, frame in ipairs(kept) do
  if frame == ARGV[4] then
    redis.call('LSET', K.hist, i - 1, ARGV[5])
    publish(0, ARGV[6])
    return {'ok'}
  end
end
return {'stale'}
"#,
    )
});

/// ARGV 4..: user, "1" to close an emptied drop-in room at once, now (ms).
pub static LEAVE: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "leave",
        r#"
if redis.call('EXISTS', K.meta) == 0 then return 0 end
release(ARGV[4], NODE, ARGV[5], ARGV[6])
return 1
"#,
    )
});

/// Takes a member out of the room on every node. ARGV 4..: user, the
/// frame their sockets get, "1" to close an emptied drop-in room at once,
/// now (ms), and when a ban on their joining ends (ms) or "" for none;
/// the ban is set even if they are not inside. The removal is sequenced like any room event (kind R), so no
/// node hands the user anything the room sends after it. Returns 1 if the
/// user was inside.
pub static REMOVE: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "remove",
        r#"
if redis.call('EXISTS', K.meta) == 0 then return 0 end
local user = ARGV[4]
if ARGV[8] ~= '' then redis.call('HSET', K.ban, user, ARGV[8]) end
if redis.call('HEXISTS', K.mem, user) == 0 then return 0 end
local prefix = user .. '@'
for _, field in ipairs(redis.call('HKEYS', K.at)) do
  if string.sub(field, 1, #prefix) == prefix then redis.call('HDEL', K.at, field) end
end
local ev = redis.call('HINCRBY', K.meta, 'ev', 1)
redis.call('PUBLISH', ROOM_CH, '\1R\0' .. ev .. ':' .. user .. ' ' .. ARGV[5])
redis.call('HDEL', K.cnt, user)
redis.call('HDEL', K.mem, user)
member_left(user)
announce()
if redis.call('HLEN', K.mem) == 0 and redis.call('HGET', K.meta, 'kind') == 'drop_in' then
  if ARGV[6] == '1' then
    close('empty')
  else
    redis.call('ZADD', EMPTY, ARGV[7], room)
  end
end
return 1
"#,
    )
});

/// ARGV 4..: reason, and "" to close regardless or a time (ms): close
/// only a room empty since then. Returns 1 if it closed the room.
pub static CLOSE: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "close",
        r#"
if redis.call('EXISTS', K.meta) == 0 then return 0 end
if ARGV[5] ~= '' then
  if redis.call('HLEN', K.mem) > 0 then
    redis.call('ZREM', EMPTY, room)
    return 0
  end
  local since = redis.call('ZSCORE', EMPTY, room)
  if not since or tonumber(since) > tonumber(ARGV[5]) then return 0 end
end
close(ARGV[4])
return 1
"#,
    )
});

/// A dead node's holds on a room. ARGV 4..: the dead node, "1" to close an
/// emptied drop-in room at once, now (ms).
pub static REAP_ROOM: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "reap_room",
        r#"
if redis.call('EXISTS', K.meta) == 0 then return 0 end
local suffix = '@' .. ARGV[4]
for _, field in ipairs(redis.call('HKEYS', K.at)) do
  if string.sub(field, -#suffix) == suffix then
    release(string.sub(field, 1, #field - #suffix), ARGV[4], ARGV[5], ARGV[6])
    if redis.call('EXISTS', K.meta) == 0 then return 1 end
  end
end
return 1
"#,
    )
});

/// Puts back what this node knows of a room after Redis lost it. ARGV
/// 4..: kind, the room's frames (JSON), capacity, created (ms), seq floor,
/// position floor, then (user id, summary JSON) pairs.
pub static RESTORE: LazyLock<Lua> = LazyLock::new(|| {
    room_script(
        "restore",
        r#"
if redis.call('EXISTS', K.meta) == 0 then
  store_room()
else
  local meta = redis.call('HMGET', K.meta, 'seq', 'ev')
  if tonumber(meta[1]) < tonumber(ARGV[8]) then redis.call('HSET', K.meta, 'seq', ARGV[8]) end
  if tonumber(meta[2]) < tonumber(ARGV[9]) then redis.call('HSET', K.meta, 'ev', ARGV[9]) end
end
local i = 10
while ARGV[i] do
  hold(ARGV[i], ARGV[i + 1])
  i = i + 2
end
if redis.call('HLEN', K.mem) > 0 then redis.call('ZREM', EMPTY, room) end
announce()
return 1
"#,
    )
});

/// Heartbeat. ARGV: prefix, node, ttl (ms). Returns 1 if the cluster
/// still knew this node, 0 if it had forgotten it (Redis lost its data, or
/// other nodes took this one for dead).
pub static HEARTBEAT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "heartbeat",
        r#"
local P, NODE = ARGV[1], ARGV[2]
local known = redis.call('SISMEMBER', P .. ':nodes', NODE)
redis.call('SADD', P .. ':nodes', NODE)
redis.call('SET', P .. ':node:' .. NODE, '1', 'PX', ARGV[3])
return known
"#,
    )
});

/// Finds nodes whose heartbeat lapsed and claims them: each dead node is
/// returned to exactly one caller, who cleans up after it.
pub static CLAIM_DEAD: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "claim_dead",
        r#"
local P = ARGV[1]
local dead = {}
for _, node in ipairs(redis.call('SMEMBERS', P .. ':nodes')) do
  if redis.call('EXISTS', P .. ':node:' .. node) == 0 then
    redis.call('SREM', P .. ':nodes', node)
    dead[#dead + 1] = node
  end
end
return dead
"#,
    )
});

/// Presence. ARGV: prefix, node, user. Marks the user online on this node;
/// returns 1 if no node had them online before.
pub static ONLINE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "online",
        r#"
local key = ARGV[1] .. ':on:' .. ARGV[3]
local first = redis.call('EXISTS', key) == 0
redis.call('HSET', key, ARGV[2], 1)
redis.call('SADD', ARGV[1] .. ':node:' .. ARGV[2] .. ':users', ARGV[3])
if first then return 1 end
return 0
"#,
    )
});

/// Presence. ARGV: prefix, node, user. The node no longer has the user;
/// returns 1 if that leaves them offline everywhere.
pub static OFFLINE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "offline",
        r#"
local key = ARGV[1] .. ':on:' .. ARGV[3]
if redis.call('HDEL', key, ARGV[2]) == 0 then return 0 end
redis.call('SREM', ARGV[1] .. ':node:' .. ARGV[2] .. ':users', ARGV[3])
if redis.call('EXISTS', key) == 0 then return 1 end
return 0
"#,
    )
});

/// Pushes a stored direct message to both participants' channels in `seq`
/// order. Two nodes may store a conversation's messages 5 and 6 and reach
/// Redis as 6, 5; an early arrival is parked until the gap fills, or until
/// upkeep gives up on it ([`DM_FLUSH`]). A conversation Redis knows
/// nothing of counts as having pushed nothing, so its 2 waits for its 1;
/// after the key expired (a day of silence) or Redis restarted empty, the
/// first message waits for that give-up instead. ARGV 3..: conversation,
/// seq, frame, sender, other participant, now (ms).
pub static DM_PUSH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "dm_push",
        &format!(
            "{DM_PRELUDE}{}",
            r#"
local seq = tonumber(ARGV[4])
redis.call('HSET', key, 'users', ARGV[6] .. ' ' .. ARGV[7])
local last = tonumber(redis.call('HGET', key, 'last')) or 0
if seq > last + 1 then
  redis.call('HSET', key, 'p' .. seq, ARGV[5])
  redis.call('ZADD', PARKED, 'NX', ARGV[8], conv)
else
  push(ARGV[5])
  if seq > last then
    last = seq
    while true do
      local next = redis.call('HGET', key, 'p' .. (last + 1))
      if not next then break end
      push(next)
      redis.call('HDEL', key, 'p' .. (last + 1))
      last = last + 1
    end
    redis.call('HSET', key, 'last', last)
  end
  if redis.call('HLEN', key) <= 2 then redis.call('ZREM', PARKED, conv) end
end
redis.call('PEXPIRE', key, 86400000)
return 1
"#
        ),
    )
});

/// Pushes whatever a conversation has parked, in order, past the gap that
/// never filled (its node died between storing and pushing). ARGV 3:
/// conversation.
pub static DM_FLUSH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "dm_flush",
        &format!(
            "{DM_PRELUDE}{}",
            r#"
local seqs = {}
for _, field in ipairs(redis.call('HKEYS', key)) do
  if string.sub(field, 1, 1) == 'p' then seqs[#seqs + 1] = tonumber(string.sub(field, 2)) end
end
table.sort(seqs)
local last = tonumber(redis.call('HGET', key, 'last')) or 0
for _, seq in ipairs(seqs) do
  push(redis.call('HGET', key, 'p' .. seq))
  redis.call('HDEL', key, 'p' .. seq)
  if seq > last then last = seq end
end
redis.call('HSET', key, 'last', last)
redis.call('ZREM', PARKED, conv)
return #seqs
"#
        ),
    )
});

const DM_PRELUDE: &str = r#"
local P, conv = ARGV[1], ARGV[3]
local key, PARKED = P .. ':dm:' .. conv, P .. ':dmpark'
local function push(frame)
  local users = redis.call('HGET', key, 'users')
  local a, b = string.match(users or '', '^(%S+) (%S+)$')
  if not a then return end
  local payload = '\1P\0' .. '0:0 ' .. frame
  redis.call('PUBLISH', P .. ':user:' .. a, payload)
  if b ~= a then redis.call('PUBLISH', P .. ':user:' .. b, payload) end
end
"#;
