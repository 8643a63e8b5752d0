-- wrk: durable 100-point fits with keep-alive, each to a new series f<thread><n>.
--   wrk -t1 -c8 -d5s -s bench/fit.lua http://127.0.0.1:PORT
local points = tonumber(os.getenv("POINTS") or "100")
local headers = {["Content-Type"] = "application/json"}
local ts, vs = {}, {}
for i = 1, points do
  ts[i] = tostring(1694336400 + 60 * i)
  vs[i] = string.format("%.3f", 50 + 5 * math.sin(i))
end
local body = '{"timestamps": [' .. table.concat(ts, ",") .. '], "values": ['
  .. table.concat(vs, ",") .. ']}'
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(0, 1e9))

function request()
  counter = counter + 1
  return wrk.format("POST", "/fit/f" .. prefix .. "-" .. counter, headers, body)
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
