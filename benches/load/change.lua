-- wrk script for benches/load/run.py: password changes from many callers for many agents.
--
-- wrk -s change.lua URL -- TOKENS_FILE MODE [DELAY_MS]
--   TOKENS_FILE: one "agent token" pair per line (run.py mints them with `sipgw dev-token`)
--   MODE: "gateway" sends sipgw's request (JWT, /v1/agents/{agent}/sip-phone-password);
--         "forge" sends it with the token's signature changed differently every time, so
--         that each request needs a signature check (the worst case of a forgery flood);
--         "vendor" sends the vendor's own update request, for the direct-to-stand-in row
--   DELAY_MS: pause per connection between requests (0 = as fast as possible); run.py uses
--         it to hold a fixed rate below the peak
-- done() prints one line "WRK_JSON {...}" that run.py parses.

local agents, tokens = {}, {}
local mode = "gateway"
local next_index = 1
local pause_ms = 0

local GATEWAY_BODY = '{"accountPwd":"Welcome~2024","newPhonePwd":"Sip~Phone2025"}'
local VENDOR_PATH = "/apiaccess/rest/cc-management/v1/sipPhone/updateSipPhonePassword"
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local forged = 0

-- `token` with the first 8 characters of its signature replaced by a counter (base64url).
local function forge(token)
  forged = forged + 1
  local n, prefix = math.floor(forged), ""
  for _ = 1, 8 do
    local digit = n % 64
    prefix = prefix .. B64:sub(digit + 1, digit + 1)
    n = math.floor(n / 64)
  end
  local head, signature = token:match("^(.*)%.([^.]*)$")
  return head .. "." .. prefix .. signature:sub(9)
end

function init(args)
  for line in io.lines(args[1]) do
    local agent, token = line:match("^(%S+) (%S+)$")
    if agent then
      agents[#agents + 1] = agent
      tokens[#tokens + 1] = token
    end
  end
  assert(#tokens > 0, "no tokens in " .. args[1])
  mode = args[2] or "gateway"
  pause_ms = tonumber(args[3] or "0")
  if pause_ms > 0 then
    function delay()
      return pause_ms
    end
  end
  -- Threads start at different callers, and forge from different points: a forgery must
  -- never repeat one that sipgw has seen (it would come from the refusal cache).
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
  next_index = math.random(#tokens)
  forged = math.random(0, 2 ^ 40)
end

function request()
  next_index = next_index % #tokens + 1
  local agent = agents[next_index]
  if mode == "vendor" then
    local body = '{"requestParam":{"accountPwd":"Welcome~2024","newPhonePwd":"Sip~Phone2025","userAccount":"'
      .. agent .. '"}}'
    return wrk.format("POST", VENDOR_PATH, {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer load-test-access-token",
      ["X-App-Key"] = "load-app-key",
    }, body)
  end
  local token = tokens[next_index]
  if mode == "forge" then
    token = forge(token)
  end
  return wrk.format("POST", "/v1/agents/" .. agent .. "/sip-phone-password", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, GATEWAY_BODY)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeout_errors":%d,"p50_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
