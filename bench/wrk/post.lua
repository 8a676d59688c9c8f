-- wrk script of `make bench`: POST one fixed JSON body, report the run as one JSON line.
--
-- Environment (set by devtools.bench.load):
--   BENCH_BODY     the request body (an OpenAI chat request)
--   BENCH_API_KEY  the bearer token (every target is given the same key)
--
-- done() prints a line starting with "BENCH_RESULT " followed by JSON, so the harness
-- never has to parse wrk's human-readable summary for the figures. errors.status is
-- what wrk prints as "Non-2xx or 3xx responses"; the harness checks both agree.

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
