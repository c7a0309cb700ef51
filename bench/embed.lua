-- wrk script: POST /embed bodies read from a file (one JSON body per line), in turn.
-- usage: wrk -t1 -c32 -d10s -s bench/embed.lua http://127.0.0.1:8080 -- bodies.jsonl
local bodies = {}
local next_body = 0
local headers = { ["Content-Type"] = "application/json" }

init = function(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
end

request = function()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/embed", headers, bodies[next_body])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
