-- Replays a plan file (one request a line: METHOD <tab> PATH <tab> JSON body or nothing) over
-- wrk's connections. Thread i of n takes lines i, i+n, i+2n, ... so no two threads send the same
-- request (a delete must hit a profile nobody else deleted). Answers are counted by status, and
-- the figures are printed as one JSON line for the harness (bench/load.py) to read.
--
-- Arguments (after "--"): plan file, Authorization header value, answers after which each thread
-- stops (0: run for wrk's whole -d duration), number of wrk threads.

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local plan, authorization = args[1], args[2]
  stop_after = tonumber(args[3])
  local thread_count = tonumber(args[4])
  local headers = {["Authorization"] = authorization}
  local json_headers = {["Authorization"] = authorization, ["Content-Type"] = "application/json"}
  prepared = {}
  local line_number = 0
  for line in io.lines(plan) do
    if line_number % thread_count == thread_index then
      local method, path, body = line:match("^(%u+)\t([^\t]*)\t(.*)$")
      if body == "" then
        prepared[#prepared + 1] = wrk.format(method, path, headers, nil)
      else
        prepared[#prepared + 1] = wrk.format(method, path, json_headers, body)
      end
    end
    line_number = line_number + 1
  end
  position = 0
  wrapped = 0
  answered = 0
  statuses = {}
end

function request()
  position = position + 1
  if position > #prepared then
    -- The plan ran out: requests repeat from here, and the harness reports it.
    position = 1
    wrapped = wrapped + 1
  end
  return prepared[position]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  answered = answered + 1
  if stop_after > 0 and answered >= stop_after then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local merged, wraps = {}, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + count
    end
    wraps = wraps + thread:get("wrapped")
  end
  local parts = {}
  for status, count in pairs(merged) do
    parts[#parts + 1] = string.format('"%s":%d', status, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"wraps":%d,"socket_errors":%d,"timeouts":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, wraps, errors.connect + errors.read + errors.write,
    errors.timeout, table.concat(parts, ",")))
end
