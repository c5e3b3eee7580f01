local cjson = require "cjson"
local s = cjson.encode({ a = { 1, 2, { b = ngx.null } }, s = "\1\2" })
ngx.say(s, cjson.decode(s).a[2])
ngx.say(ngx.re.gsub("a1b22c333", "(\\d+)", "<$1>", "jo"))
ngx.say(ngx.md5("x"), ngx.encode_base64("yy"), ngx.decode_base64("eXk="), ngx.crc32_long("z"))
ngx.say(ngx.escape_uri("a b/c"), ngx.unescape_uri("%41%zz"), ngx.encode_args({ a = 1, b = { 2, 3 } }))
ngx.say(ngx.time() > 0, ngx.now() > 0, ngx.http_time(0), ngx.quote_sql_str("'x"))
ngx.timer.at(0, function(premature, x) ngx.log(ngx.ERR, x) end, "timer")
ngx.exit(204)
