-- content: echoes the request as JSON.
local util = require("util")
ngx.req.read_body() -- nginx reads the body when a script asks for it
ngx.status = 200
ngx.say(util.encode({
  method = ngx.req.get_method(),
  uri = ngx.var.uri,
  args = ngx.var.args or "",
  body = ngx.req.get_body_data() or "",
}))
