-- Seals a sandboxed worker once `ngx` and the base environment are complete, so that no request
-- can change what the next one on the worker runs (`string.upper = f`, `ngx.say = f`,
-- `getmetatable("").__index.upper = f`, `rawset(table, "insert", f)`).
--
-- Every table scripts reach from the base environment (the libraries, `ngx` and its sub-tables)
-- becomes an empty proxy: its `__index` is the real table, so a lookup costs one more table hop,
-- and writes raise, unless the real table has a `__newindex` of its own (the request fields of
-- `ngx`, such as `ngx.ctx`): writes go to that. The real tables are never handed to scripts.
-- Per-request views such as `ngx.var`, whose fields all come from their metatable, stay as they
-- are with their metatable hidden.
local P = ...
local base = P.base
local error, next, type, tostring = error, next, type, tostring
local getmetatable, setmetatable, raw_rawset, raw_pairs = getmetatable, setmetatable, rawset, pairs

-- Read-only table (proxy or view) -> its name, for messages; proxy -> its real table.
local names, reals = {}, {}
-- Real table -> its proxy, so a table reached twice gets one proxy.
local proxies = {}

local function refuse(name)
  return function()
    error("attempt to modify read-only table '" .. name .. "'", 2)
  end
end

local function freeze(name, real)
  if names[real] then
    return real
  elseif proxies[real] then
    return proxies[real]
  end
  local own = getmetatable(real)
  -- A table whose fields all come from its metatable (ngx.var) is a per-request view already:
  -- hiding its metatable and refusing raw writes to it is enough, and saves a hop per lookup.
  -- Views may share a metatable (the shared dicts): once hidden, getmetatable answers false.
  if own == false and next(real) == nil then
    names[real] = name
    return real
  end
  -- An empty table with no metatable is sealed in place, as what it is matters to the engine
  -- (cjson.array_mt marks arrays by identity).
  if own == nil and next(real) == nil then
    setmetatable(real, { __newindex = refuse(name), __metatable = false })
    names[real] = name
    return real
  end
  if own and next(real) == nil then
    own.__metatable = false
    own.__newindex = own.__newindex or refuse(name)
    names[real] = name
    return real
  end
  local proxy = setmetatable({}, {
    __index = real,
    __newindex = own and own.__newindex or refuse(name),
    __metatable = false,
  })
  proxies[real], names[proxy], reals[proxy] = proxy, name, real
  for key, value in next, real do
    if type(value) == "table" then
      raw_rawset(real, key, freeze(name .. "." .. tostring(key), value))
    end
  end
  return proxy
end

-- `rawset` and LuaJIT's `table.insert` write past `__newindex`: they refuse read-only tables.
-- (Lua 5.4's `table.insert` honours `__newindex`, and is twice as slow wrapped.)
local function guard(fn)
  return function(t, ...)
    local name = names[t]
    if name then
      error("attempt to modify read-only table '" .. name .. "'", 2)
    end
    return fn(t, ...)
  end
end
base.rawset = guard(raw_rawset)
if jit then
  base.table.insert = guard(base.table.insert)
end

-- `package.loaded` and `package.preload` are views whose own __newindex lets a request register
-- modules of its own (prelude.lua); `package` itself is read-only like the libraries.
for name, library in next, base do
  if type(library) == "table" then
    base[name] = freeze(name, library)
  end
end

-- getmetatable("") answers a read-only view whose __index is the read-only `string`.
local string_mt = getmetatable("")
string_mt.__metatable = freeze("string metatable", { __index = base.string })

-- Metatables the engine shares between requests' own tables (ngx.req.get_headers results).
for _, mt in ipairs(P.metatables) do
  mt.__metatable = false
end

-- LuaJIT ignores __pairs: `pairs` walks a proxy's real table through the proxy.
local function proxy_next(proxy, key)
  return next(reals[proxy], key)
end
-- package.loaded/preload list what the running code sees through them.
local listings = P.modules.listings
function base.pairs(t)
  if reals[t] then
    return proxy_next, t, nil
  end
  local list = listings[t]
  if list then
    return next, list(), nil
  end
  return raw_pairs(t)
end

-- Only "count" is harmless: the other options change the collector of the whole worker.
local raw_collectgarbage = collectgarbage
function base.collectgarbage(option, ...)
  if option == "count" then
    return raw_collectgarbage(option, ...)
  end
  local shown = option == nil and "collect" or tostring(option)
  error("bad argument #1 to 'collectgarbage' ('" .. shown .. "' is not allowed in the sandbox, only 'count')", 2)
end

-- `require` answers the sandbox's libraries itself, and refuses by name the modules the VM has
-- built in but the sandbox hides (io, jit.util, ...), rather than searching the path for them;
-- LuaJIT's ffi and jit on both backends, so that scripts get the same answer.
local builtins = P.builtins
for _, modules in ipairs({ package.loaded, package.preload, { ffi = true, jit = true } }) do
  for name in next, modules do
    builtins[name] = false
  end
end
for name, library in next, base do
  if reals[library] then
    builtins[name] = library
  end
end

-- Every module the engine registered (cjson, host, ...) is a built-in one: sealed like the
-- libraries and taken out of the worker's tables, so that `require` answers it from `builtins`
-- and no script replaces it. Those in `preload` are loaded on first use (a worker starts
-- without them); a loader that fails stays for the next try.
local function built_in(name, module)
  module = type(module) == "table" and freeze(name, module) or module
  raw_rawset(builtins, name, module)
  return module
end
local loaders = {}
local loaded, preload = P.modules.loaded, P.modules.preload
for name, module in next, loaded do
  built_in(name, module)
  loaded[name] = nil
end
for name, loader in next, preload do
  loaders[name] = loader
  preload[name] = nil
end
setmetatable(builtins, {
  __index = function(_, name)
    local loader = loaders[name]
    if loader ~= nil then
      local module = built_in(name, loader(name))
      loaders[name] = nil
      return module
    end
  end,
})
