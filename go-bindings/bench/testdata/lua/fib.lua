-- fib as an OpenResty user writes hot code: a module function, made once per Lua state.
local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
return fib
