-- wrk script of `make soak`: cycle through the mix's kinds of request (OpenAI chat and stream,
-- an endpoint call with a session, a grounded gateway call, a channel chat), each request with
-- its own X-Request-Id, until each thread has its share of answers; report exact counts as one line.
--
-- Environment (set by devtools.bench.soak; the kinds by devtools.bench.soak_mix):
--   SOAK_KINDS                        how many kinds; kind i (1-based) is given by
--     SOAK_KIND_<i>_PATH, _BODY       where it goes and its body
--     SOAK_KIND_<i>_HEADERS           its headers, one "Name: value" a line
--     SOAK_KIND_<i>_SESSION           "" | "issued" | "chosen" (how @SESSION@ is filled)
--     SOAK_KIND_<i>_SESSION_BODY      the body with a session id in place of @SESSION@
--   SOAK_CYCLE                        kind numbers in sending order, comma-separated (repeated)
--   SOAK_SESSION_TURNS                calls per session before a new one starts
--   SOAK_API_KEY                      unused here (the kinds carry their credentials)
--   SOAK_ID_PREFIX                    request ids are <prefix>-<thread>-<n>, n = 1, 2, ...
--   SOAK_REQUESTS, SOAK_THREADS       answers wanted in all, and wrk's --threads
--
-- Sessions: an "issued" kind sends the id the last answer's x-switchyard-session-id header
-- gave this thread (its body without one starts a session) for SOAK_SESSION_TURNS calls, then
-- starts a new one; a "chosen" kind makes up <prefix>-<thread>-s<k>, k advancing every
-- SOAK_SESSION_TURNS calls of that kind.
--
-- Answers are classified by what they carry (wrk does not say which request an answer is
-- for): a stream ("data:"), an endpoint answer (the session header), a channel reply
-- ("reply"), a grounded chat (a citation's "document_id"), else a chat.
--
-- A thread stops itself (wrk.thread:stop()) once it has its share of answers, after printing
-- "SOAK_THREAD_DONE"; once the harness has read that line from every thread it sends wrk SIGINT
-- (wrk's main thread sleeps until then, or until --duration), and wrk runs done(). Requests a
-- thread had written but not yet seen answered when it stopped (or when --duration ran out)
-- are the difference sent - answered: the server may have served them, wrk never counts them.
--
-- done() prints "SOAK_RESULT " followed by JSON; counts are summed over threads.

local threads = {}
local COUNTS = { "sent", "answered", "ok_chat", "ok_stream", "ok_endpoint", "ok_grounded",
                 "ok_channel", "not_ok" }

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

local function headers_of(text)
   local headers = {}
   for name, value in string.gmatch(text, "([^:\n]+): ([^\n]*)") do
      headers[name] = value
   end
   return headers
end

function init(args)
   kinds = {}
   for i = 1, tonumber(os.getenv("SOAK_KINDS")) do
      local env = function(field) return os.getenv("SOAK_KIND_" .. i .. "_" .. field) or "" end
      kinds[i] = {
         path = env("PATH"), body = env("BODY"), headers = headers_of(env("HEADERS")),
         session = env("SESSION"), session_body = env("SESSION_BODY"), calls = 0,
      }
   end
   cycle = {}
   for number in string.gmatch(os.getenv("SOAK_CYCLE"), "%d+") do
      table.insert(cycle, kinds[tonumber(number)])
   end
   turns = tonumber(os.getenv("SOAK_SESSION_TURNS"))
   prefix = os.getenv("SOAK_ID_PREFIX") .. "-" .. thread_index .. "-"
   issued, issued_uses = nil, 0
   sent, answered, ok_chat, ok_stream, ok_endpoint, ok_grounded, ok_channel, not_ok =
      0, 0, 0, 0, 0, 0, 0, 0
   stopping = false
end

local function body_of(kind)
   kind.calls = kind.calls + 1
   if kind.session == "chosen" then
      local id = prefix .. "s" .. math.floor((kind.calls - 1) / turns)
      return (string.gsub(kind.session_body, "@SESSION@", id))
   elseif kind.session == "issued" then
      if issued ~= nil and issued_uses < turns then
         issued_uses = issued_uses + 1
         return (string.gsub(kind.session_body, "@SESSION@", issued))
      end
      issued, issued_uses = nil, 0
   end
   return kind.body
end

function request()
   sent = sent + 1
   local kind = cycle[(sent - 1) % #cycle + 1]
   kind.headers["X-Request-Id"] = prefix .. sent
   return wrk.format("POST", kind.path, kind.headers, body_of(kind))
end

function response(status, headers, body)
   answered = answered + 1
   local session = headers["x-switchyard-session-id"] or headers["X-Switchyard-Session-Id"]
   if status < 200 or status > 299 then
      not_ok = not_ok + 1
   elseif string.sub(body, 1, 5) == "data:" then
      ok_stream = ok_stream + 1
   elseif session ~= nil then
      ok_endpoint = ok_endpoint + 1
      if issued == nil then
         issued, issued_uses = session, 0
      end
   elseif string.find(body, '"reply"', 1, true) then
      ok_channel = ok_channel + 1
   elseif string.find(body, '"document_id"', 1, true) then
      ok_grounded = ok_grounded + 1
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
   local n = {}
   for _, name in ipairs(COUNTS) do
      n[name] = 0
      for _, thread in ipairs(threads) do
         n[name] = n[name] + thread:get(name)
      end
   end
   local e = summary.errors
   io.write(string.format(
      'SOAK_RESULT {"sent":%d,"answered":%d,"ok_chat":%d,"ok_stream":%d,"ok_endpoint":%d,' ..
      '"ok_grounded":%d,"ok_channel":%d,"not_ok":%d,"requests":%d,"duration_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p99":%d,"max":%d}}\n',
      n.sent, n.answered, n.ok_chat, n.ok_stream, n.ok_endpoint, n.ok_grounded, n.ok_channel,
      n.not_ok, summary.requests, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
