-- Only callers that present the demo token get past the access phase; the others get a 401
-- that tells them how to authenticate (headers set before ngx.exit stay on the error page).
local token = ngx.req.get_headers()["x-token"]
if token ~= "let-me-in" then
  ngx.header["WWW-Authenticate"] = 'Token realm="demo"'
  return ngx.exit(ngx.HTTP_UNAUTHORIZED)
end
ngx.ctx.user = "demo-user"
