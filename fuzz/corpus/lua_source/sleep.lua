ngx.say("before")
ngx.sleep(0.001)
coroutine.yield()
ngx.say("after")
