-- wrk script: after the run, print one JSON line with the counts and the latency
-- distribution (microseconds) at fine percentiles, for the benchmark's report and plots.
done = function(summary, latency, requests)
  local points = {}
  for p = 1, 99 do points[#points + 1] = p end
  for _, p in ipairs({99.5, 99.9, 99.99}) do points[#points + 1] = p end
  local parts = {}
  for _, p in ipairs(points) do
    parts[#parts + 1] = string.format('[%g,%d]', p, latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"min_us":%d,"max_us":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"percentiles":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, latency.min, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ',')))
end
