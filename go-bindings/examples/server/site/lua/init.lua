-- init: runs in every Lua state before anything else. Its globals are visible to every request
-- (read them, do not change them).
greeting = "hello"
