local co = coroutine.wrap(function(a)
  for i = 1, 3 do a = coroutine.yield(a + i) end
  error("done")
end)
print(pcall(co, 1), pcall(co, 2))
local c2 = coroutine.create(function() error({}) end)
ngx.say(coroutine.resume(c2), coroutine.status(c2))
