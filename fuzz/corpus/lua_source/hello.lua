ngx.status = 201
ngx.header["X-A"] = "b"
ngx.say("hello ", ngx.var.uri, " ", ngx.req.get_method())
