//! The Lua scripts: each runs atomically in Redis, which is what makes
//! offsets unique and gap-free across nodes and keeps every node's view of
//! a group in one order.

use redis::Script;

/// Drops the oldest history entries while a bound is exceeded, at most 256
/// a call (the bound converges over later calls). Shared by `SEND` and
/// `READ`: history is trimmed on write, and by age on read too.
const TRIM: &str = r#"
local function trim(log, bytes_key, edits, maxn, maxb, ttl, now)
  local n = redis.call('XLEN', log)
  local b = tonumber(redis.call('GET', bytes_key) or '0') or 0
  local changed = false
  for _ = 1, 256 do
    if n == 0 then break end
    local head = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
    if not head then break end
    local f = head[2]
    local t, d = 0, ''
    for j = 1, #f, 2 do
      if f[j] == 't' then t = tonumber(f[j + 1]) or 0 elseif f[j] == 'd' then d = f[j + 1] end
    end
    local off = string.match(head[1], '^(%d+)')
    local e = redis.call('HGET', edits, off)
    local len = #d
    if e then len = #e - 1 end
    local over = (maxn > 0 and n > maxn) or (maxb > 0 and b > maxb and n > 1)
      or (ttl > 0 and now - t >= ttl)
    if not over then break end
    redis.call('XDEL', log, head[1])
    if e then redis.call('HDEL', edits, off) end
    b = b - len
    n = n - 1
    changed = true
  end
  if changed then redis.call('SET', bytes_key, math.max(b, 0)) end
end
"#;

/// A group send.
/// KEYS: off, epoch, log, bytes, edits, groups.
/// ARGV: channel, save (1/0), kind, ts_ms, epoch candidate, max messages,
/// max bytes, ttl ms, placeholder position (1-based, 0 = none), payload,
/// group. Returns {offset, epoch}.
const SEND: &str = r#"
local payload = ARGV[10]
local offset = 0
local epoch = '0'
if ARGV[2] == '1' then
  epoch = redis.call('GET', KEYS[2])
  if not epoch then
    epoch = ARGV[5]
    redis.call('SET', KEYS[2], epoch)
  end
  local raw = payload
  local function append(n)
    local digits = string.format('%d', n)
    local pos = tonumber(ARGV[9])
    payload = raw
    if pos > 0 then
      payload = string.sub(raw, 1, pos - 1) .. digits .. string.sub(raw, pos + 20)
    end
    return redis.pcall('XADD', KEYS[3], digits .. '-0', 'k', ARGV[3], 't', ARGV[4], 'd', payload)
  end
  offset = redis.call('INCR', KEYS[1])
  local added = append(offset)
  if type(added) == 'table' and added.err then
    -- The counter fell behind the stream (its key was lost or rewritten):
    -- continue after the newest entry, so offsets stay unique.
    local tail = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
    local top = 0
    if tail then top = tonumber(string.match(tail[1], '^(%d+)')) or 0 end
    redis.call('SET', KEYS[1], string.format('%d', top))
    offset = redis.call('INCR', KEYS[1])
    added = append(offset)
    if type(added) == 'table' and added.err then return redis.error_reply(added.err) end
  end
  redis.call('INCRBY', KEYS[4], #payload)
  redis.call('SADD', KEYS[6], ARGV[11])
  trim(KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]),
    tonumber(ARGV[4]))
end
redis.call('PUBLISH', ARGV[1], 'cbx1\n' .. ARGV[3] .. '\n' .. string.format('%d', offset) .. '\n'
  .. ARGV[4] .. '\n' .. epoch .. '\n' .. payload)
return {offset, epoch}
"#;

/// A history read.
/// KEYS: off, epoch, log, bytes, edits.
/// ARGV: low id, high id, limit (0 = all), max messages, max bytes, ttl ms,
/// now ms, only the header (1/0), epoch candidate.
/// Returns {epoch, first offset, last offset, (offset, kind, ts, payload)*}.
const READ: &str = r#"
local epoch = redis.call('GET', KEYS[2])
local last = redis.call('GET', KEYS[1])
if not epoch then
  -- Offsets exist but the epoch is gone: history was lost, say so.
  if last then
    epoch = ARGV[9]
    redis.call('SET', KEYS[2], epoch)
  else
    epoch = '0'
  end
end
trim(KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
  tonumber(ARGV[7]))
local head = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
local first = '0'
if head then first = string.match(head[1], '^(%d+)') or '0' end
local out = {epoch, first, last or '0'}
if ARGV[8] == '1' then return out end
local entries
local limit = tonumber(ARGV[3])
if limit > 0 then
  local rev = redis.call('XREVRANGE', KEYS[3], ARGV[2], ARGV[1], 'COUNT', limit)
  entries = {}
  for i = #rev, 1, -1 do entries[#entries + 1] = rev[i] end
else
  entries = redis.call('XRANGE', KEYS[3], ARGV[1], ARGV[2])
end
for _, e in ipairs(entries) do
  local off = string.match(e[1], '^(%d+)') or '0'
  local f = e[2]
  local k, t, d = '', '0', ''
  for j = 1, #f, 2 do
    if f[j] == 'k' then k = f[j + 1] elseif f[j] == 't' then t = f[j + 1]
    elseif f[j] == 'd' then d = f[j + 1] end
  end
  local ed = redis.call('HGET', KEYS[5], off)
  if ed then
    k = string.sub(ed, 1, 1)
    d = string.sub(ed, 2)
  end
  out[#out + 1] = off
  out[#out + 1] = k
  out[#out + 1] = t
  out[#out + 1] = d
end
return out
"#;

/// Replaces one history entry, then re-applies the count and byte bounds
/// (a grown entry evicts the oldest, as a send does; age is left to reads).
/// KEYS: log, bytes, edits. ARGV: offset, kind, payload, max messages,
/// max bytes. Returns the entry's ts_ms, or nil when no entry has that
/// offset.
const REPLACE: &str = r#"
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not e then return false end
local f = e[2]
local t, d = '0', ''
for j = 1, #f, 2 do
  if f[j] == 't' then t = f[j + 1] elseif f[j] == 'd' then d = f[j + 1] end
end
local old = redis.call('HGET', KEYS[3], ARGV[1])
local oldlen = #d
if old then oldlen = #old - 1 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ARGV[3])
redis.call('INCRBY', KEYS[2], #ARGV[3] - oldlen)
trim(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), 0, 0)
return t
"#;

/// The engine's scripts, loaded lazily by EVALSHA (EVAL on NOSCRIPT, as
/// after a Redis restart).
pub(crate) struct Scripts {
    pub(crate) send: Script,
    pub(crate) read: Script,
    pub(crate) replace: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            send: Script::new(&format!("{TRIM}{SEND}")),
            read: Script::new(&format!("{TRIM}{READ}")),
            replace: Script::new(&format!("{TRIM}{REPLACE}")),
        }
    }
}
