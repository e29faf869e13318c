-- POST a large body for wrk (default 1 MiB, all 'x'), to an endpoint that
-- answers with the body's length rather than the body itself.
--
--   wrk -t1 -c16 -d10s --latency -s bench/http/post.lua http://127.0.0.1:8000/len -- 1048576
--
-- The request is built once; every request sends the same bytes.
init = function(args)
  local size = tonumber(args[1]) or 1048576
  local headers = {}
  headers["Content-Type"] = "application/octet-stream"
  req = wrk.format("POST", nil, headers, string.rep("x", size))
end

request = function()
  return req
end
