local t = {}
for i = 1, 1000 do t[i] = string.rep("x", i % 17) .. i end
table.sort(t)
local s = table.concat(t, ",")
ngx.print(#s, " ", select("#", unpack(t, 1, 100)))
