-- wrk: single-point predicts with keep-alive, spread over SERIES series s0000000...
--   SERIES=1000 wrk -t1 -c16 -d5s -s bench/predict.lua http://127.0.0.1:PORT
-- done() prints one JSON line (latencies in microseconds) for bench/run.py.
local series = tonumber(os.getenv("SERIES") or "1000")
local body = '{"timestamp": "1694336640", "value": 55.0}'
local headers = {["Content-Type"] = "application/json"}

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  local path = string.format("/predict/s%07d", math.random(0, series - 1))
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
