-- Shared by the wrk scripts: the API key, per-thread state, request builders, the JSON summary.
-- wrk runs a script once per thread (each in its own Lua state) and once more for setup/done.
local M = {}

wrk.headers["X-API-Key"] = os.getenv("BENCH_API_KEY")
wrk.headers["Content-Type"] = "application/json"

local thread_count = 0

-- Give every thread its index (a global in that thread's state).
function M.setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

-- Pre-formatted GET requests, one per line of the paths file.
function M.load_reads(path)
  local reads = {}
  for line in io.lines(path) do
    if #line > 0 then reads[#reads + 1] = wrk.format("GET", line) end
  end
  assert(#reads > 0, "no paths in " .. path)
  return reads
end

-- Each thread owns `per_thread` fresh calls from `first`; every call gets three offers, all
-- above the ceiling (counter, counter, reject), so no request should ever be refused. As on a
-- phone call, a call's next offer is sent after the answer to its last: a thread takes its
-- calls `window` at a time and sends one offer to each in turn, so consecutive offers of one
-- call are `window` requests apart, more than the thread's connections have in flight.
-- (window = 1 sends a call's three offers back to back, overlapping on several connections.)
local offers = { "2500.00", "2400.00", "2300.00" }
function M.recorder(first, per_thread, window)
  local base = first + thread_index * per_thread
  local sent = 0
  return function()
    local block = math.floor(sent / (3 * window))
    local within = sent % (3 * window)
    local call = base + block * window + within % window
    local offer = offers[math.floor(within / window) + 1]
    sent = sent + 1
    local body = '{"carrier_offer": ' .. offer .. ', "session_id": "bench-r-' .. call .. '"}'
    return wrk.format("POST", "/api/calls/" .. call .. "/negotiate", nil, body)
  end
end

function M.seed_random()
  math.randomseed(os.time() * 1000 + thread_index)
end

-- One line the harness parses: counts, latency percentiles (microseconds), errors.
function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "mean_us": %.1f, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "status_errors": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end

return M
