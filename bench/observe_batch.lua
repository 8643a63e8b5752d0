-- wrk: batch observes of POINTS points (default 1,000) over SERIES streams b0000000...
--   POINTS=1000 SERIES=100 wrk -t1 -c4 -d5s -s bench/observe_batch.lua http://127.0.0.1:PORT
-- One body made once (values around 50, every timestamp the same: repeats are
-- allowed, so any stream takes it again). done() prints one JSON line.
local series = tonumber(os.getenv("SERIES") or "100")
local points = tonumber(os.getenv("POINTS") or "1000")
local headers = {["Content-Type"] = "application/json"}
local body

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  local stamps, values = {}, {}
  for i = 1, points do
    stamps[i] = "1694336640"
    values[i] = string.format("%.3f", 50 + 4 * (math.random() - 0.5))
  end
  body = '{"timestamps": [' .. table.concat(stamps, ",") .. '], "values": [' ..
    table.concat(values, ",") .. ']}'
end

function request()
  local path = string.format("/observe/b%07d/batch", math.random(0, series - 1))
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
