//! The Lua scripts run by Redis. Each runs atomically on the server and reads the server's
//! clock (`TIME`), so replicas racing for the last token, or with skewed clocks, agree.
//!
//! Times are whole microseconds (quota) or milliseconds (lockout) since the Unix epoch; both
//! fit a Lua double exactly. Numbers are written back with `%.0f`, never `tostring`, which
//! would switch to exponent notation.

use std::sync::LazyLock;

use redis::Script;

/// GCRA (as redis-cell): `KEYS[1]` holds the bucket's theoretical arrival time (TAT).
/// ARGV: emission interval (µs), burst. Returns {allowed 0/1, remaining, retry_after µs}.
/// The key expires when the bucket is full again, so idle keys vanish.
pub static QUOTA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * (burst - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, 0, tat - tolerance - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now + interval * burst - new_tat) / interval), 0}
"#,
    )
});

/// Lockout check: `KEYS[1]` the agent's hash. Returns the block's remaining milliseconds, or 0.
pub static LOCKOUT_CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'blocked_until'))
if not until_ms then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if until_ms > now then return until_ms - now end
return 0
"#,
    )
});

/// A vendor rejection: `KEYS[1]` the agent's hash (failures, last, blocked_until).
/// ARGV: max consecutive failures, cool-down (ms). Counts, and blocks at the maximum, in
/// one step; the hash expires with the cool-down. Returns 1 when the agent is now blocked.
pub static LOCKOUT_REJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
local cooldown = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'failures', 'last', 'blocked_until')
local failures = tonumber(v[1]) or 0
local last = tonumber(v[2]) or now
local blocked = tonumber(v[3])
if now - last >= cooldown or (blocked and blocked <= now) then
  failures = 0
end
failures = failures + 1
local result = 0
if failures >= max then
  redis.call('HSET', KEYS[1], 'blocked_until', string.format('%.0f', now + cooldown))
  result = 1
else
  redis.call('HDEL', KEYS[1], 'blocked_until')
end
redis.call('HSET', KEYS[1], 'failures', failures, 'last', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], cooldown)
return result
"#,
    )
});

/// Deletes `KEYS[1]` if it still holds `ARGV[1]` (an agent's turn: only its holder releases it).
pub static RELEASE_TURN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// An `Idempotency-Key` lookup: `KEYS[1]` the entry's hash (fp, state, token, status, ctype,
/// body). ARGV: body fingerprint, claim token, claim lease (ms). A new key is claimed as
/// in flight for the lease. Returns {"proceed"}, {"reused"}, {"flight"} or
/// {"done", status, content type, body (base64)}.
pub static IDEM_BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HMGET', KEYS[1], 'fp', 'state', 'status', 'ctype', 'body')
if not v[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'flight', 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'proceed'}
end
if v[1] ~= ARGV[1] then return {'reused'} end
if v[2] == 'done' then return {'done', v[3], v[4], v[5]} end
return {'flight'}
"#,
    )
});

/// The first request's outcome: `KEYS[1]` the entry; ARGV: claim token, status, content
/// type, body (base64), ttl (ms). Only the claim's holder completes it. Returns 1 if stored.
pub static IDEM_COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'ctype', ARGV[3], 'body', ARGV[4])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"#,
    )
});

/// Releases a claim (the request never reached the vendor): `KEYS[1]` deleted if its token
/// is still `ARGV[1]`.
pub static IDEM_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});
