-- access: only requests with the right token get in; the user name travels in ngx.ctx.
local token = ngx.req.get_headers()["x-token"]
if token ~= "secret" then
  return ngx.exit(ngx.HTTP_FORBIDDEN)
end
ngx.ctx.user = ngx.var.arg_user or "anonymous"
