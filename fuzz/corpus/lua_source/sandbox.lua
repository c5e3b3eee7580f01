print(pcall(function() string.upper = nil end))
print(pcall(function() getmetatable("").__index.x = 1 end))
print(pcall(rawset, ngx, "x", 1), pcall(setmetatable, _G, {}))
print(pcall(require, "io"), pcall(load, "\27LJ"), pcall(collectgarbage))
package.loaded.mine = { 1 }
g = load("return 1 + ...")(2)
ngx.ctx.v = g
ngx.say(require("mine")[1], g, ngx.ctx.v)
