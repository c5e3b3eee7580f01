-- A JSON API over the request: GET /api/anything?a=1&a=2&b=x answers
--   {"args":{"a":["1","2"],"b":"x"},"method":"GET","path":"/api/anything"}
-- and POST adds the form fields of an application/x-www-form-urlencoded body.
local json = require("json")

local reply = {
  method = ngx.req.get_method(),
  path = ngx.var.uri,
  args = ngx.req.get_uri_args(),
}
if reply.method == "POST" then
  ngx.req.read_body()
  reply.form = ngx.req.get_post_args()
elseif reply.method ~= "GET" and reply.method ~= "HEAD" then
  ngx.status = ngx.HTTP_NOT_ALLOWED
  reply = { error = "use GET or POST" }
end
ngx.header.content_type = "application/json"
ngx.say(json.encode(reply))
