-- wrk script of `make soak`: alternate a chat and a streamed chat request, each with its own
-- X-Request-Id, until each thread has its share of answers; report exact counts as one line.
--
-- Environment (set by devtools.bench.soak):
--   SOAK_CHAT_BODY, SOAK_STREAM_BODY  the two request bodies (sent alternately)
--   SOAK_API_KEY                      the bearer token
--   SOAK_ID_PREFIX                    request ids are <prefix>-<thread>-<n>, n = 1, 2, ...
--   SOAK_REQUESTS, SOAK_THREADS       answers wanted in all, and wrk's --threads
--
-- A thread stops itself (wrk.thread:stop()) once it has its share of answers, after printing
-- "SOAK_THREAD_DONE"; once the harness has read that line from every thread it sends wrk SIGINT
-- (wrk's main thread sleeps until then, or until --duration), and wrk runs done(). Requests a
-- thread had written but not yet seen answered when it stopped (or when --duration ran out)
-- are the difference sent - answered: the server may have served them, wrk never counts them.
--
-- done() prints "SOAK_RESULT " followed by JSON; counts are summed over threads.

local threads = {}

function setup(thread)
   local total = tonumber(os.getenv("SOAK_REQUESTS"))
   local count = tonumber(os.getenv("SOAK_THREADS"))
   local index = #threads + 1
   local share = math.floor(total / count)
   if index <= total % count then
      share = share + 1
   end
   thread:set("thread_index", index)
   thread:set("quota", share)
   table.insert(threads, thread)
end

function init(args)
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. os.getenv("SOAK_API_KEY")
   bodies = { os.getenv("SOAK_CHAT_BODY"), os.getenv("SOAK_STREAM_BODY") }
   prefix = os.getenv("SOAK_ID_PREFIX") .. "-" .. thread_index .. "-"
   sent, answered, ok_chat, ok_stream, not_ok = 0, 0, 0, 0, 0
   stopping = false
end

function request()
   sent = sent + 1
   wrk.headers["X-Request-Id"] = prefix .. sent
   return wrk.format(nil, nil, nil, bodies[sent % 2 + 1])
end

function response(status, headers, body)
   answered = answered + 1
   if status < 200 or status > 299 then
      not_ok = not_ok + 1
   elseif string.sub(body, 1, 5) == "data:" then
      ok_stream = ok_stream + 1
   else
      ok_chat = ok_chat + 1
   end
   if answered >= quota and not stopping then
      stopping = true
      io.write("SOAK_THREAD_DONE\n")
      io.stdout:flush()
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local n = { sent = 0, answered = 0, ok_chat = 0, ok_stream = 0, not_ok = 0 }
   for _, thread in ipairs(threads) do
      for name, value in pairs(n) do
         n[name] = value + thread:get(name)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'SOAK_RESULT {"sent":%d,"answered":%d,"ok_chat":%d,"ok_stream":%d,"not_ok":%d,' ..
      '"requests":%d,"duration_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p99":%d,"max":%d}}\n',
      n.sent, n.answered, n.ok_chat, n.ok_stream, n.not_ok,
      summary.requests, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
