-- header_filter: every response of the location leaves with these headers, and without the
-- internal ones the content phase may have set.
ngx.header["X-Content-Type-Options"] = "nosniff"
ngx.header["X-Frame-Options"] = "DENY"
ngx.header["X-Internal-Token"] = nil
