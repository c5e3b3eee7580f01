-- GET /hello?name=Ada -> "hello, Ada!"
local name = ngx.var.arg_name or "world"
ngx.say("hello, ", name, "!")
