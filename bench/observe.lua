-- wrk: single-point observes with keep-alive, spread over SERIES streams s0000000...
--   SERIES=1000 wrk -t1 -c16 -d5s -s bench/observe.lua http://127.0.0.1:PORT
-- Every point has the same timestamp (repeats are allowed, a stream never goes back),
-- so any stream takes any request in any order. done() prints one JSON line.
local series = tonumber(os.getenv("SERIES") or "1000")
local headers = {["Content-Type"] = "application/json"}

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  local path = string.format("/observe/s%07d", math.random(0, series - 1))
  local body = string.format(
    '{"timestamp": 1694336640, "value": %.3f}', 50 + 4 * (math.random() - 0.5))
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.6f, "errors": %d, ' ..
    '"p50": %d, "p95": %d, "p99": %d}\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
