-- GET /hello?name=Ada -> "hello, Ada!" (`greeting` comes from init, lua/init.lua)
local name = ngx.var.arg_name or "world"
ngx.say(greeting, ", ", name, "!")
