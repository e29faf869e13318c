-- HTTP/1.1 pipelining for wrk, as TechEmpower's plaintext test does it:
-- every write carries `depth` GET requests back to back (default 16).
--
--   wrk -t1 -c64 -d10s --latency -s bench/http/pipeline.lua http://127.0.0.1:8000/ -- 16
--
-- wrk reads the responses one by one, so req/s counts responses; a latency
-- sample spans a whole batch of `depth` requests.
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
