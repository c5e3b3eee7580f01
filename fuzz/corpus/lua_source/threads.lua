local a = ngx.thread.spawn(function() ngx.sleep(0) return 1 end)
local b = ngx.thread.spawn(function() error("b fails") end)
ngx.say(ngx.thread.wait(a), ngx.thread.wait(b))
ngx.thread.kill(ngx.thread.spawn(function() ngx.sleep(1) end))
