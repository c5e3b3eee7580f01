-- GET /sleep?ms=200 waits 200 ms without holding an OS thread: the phase yields and the
-- request's goroutine parks until the engine's clock wakes it.
local ms = tonumber(ngx.var.arg_ms) or 100
if ms < 0 or ms > 5000 then
  return ngx.exit(ngx.HTTP_BAD_REQUEST)
end
ngx.sleep(ms / 1000)
ngx.header["X-Slept-Ms"] = tostring(ms)
ngx.say("slept ", ms, " ms")
