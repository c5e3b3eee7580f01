-- content: echoes the request as JSON.
local util = require("util")
ngx.status = 200
ngx.say(util.encode({
  method = ngx.req.get_method(),
  uri = ngx.var.uri,
  args = ngx.var.args or "",
  body = ngx.req.get_body_data() or "",
}))
