local ok, err = pcall(error, setmetatable({}, { __tostring = function() return "obj" end }))
ngx.say(ok, tostring(err))
print(xpcall(function() local x = nil; return x.y end, debug.traceback))
error("top level " .. string.format("%q %5.2f %x", "s\0", 1.5, 255))
