-- Runs once in every worker, before any script. Rust hands over the pieces it built (P) and
-- keeps what this returns. Everything here is private to the engine: scripts only see what is
-- put into `ngx` and the base environment.
local P = ...
local ngx, impl, signal = P.ngx, P.impl, P.signal
local setfenv = P.setfenv
local co_create, co_resume, co_yield, co_status = coroutine.create, coroutine.resume, coroutine.yield, coroutine.status
local error, type, rawget, rawset, setmetatable = error, type, rawget, rawset, setmetatable
local lower, gsub = string.lower, string.gsub

-- `chunk` returns a fresh closure of the script (see cache.rs) whose globals are `env`.
local function instantiate(chunk, env)
  local f = chunk()
  if setfenv then
    setfenv(f, env)
  end
  return f
end

-- Every phase run is one call of this on a pooled coroutine, with the request's globals as
-- `env`. Returning the signal alone tells the engine the script finished (engine yields carry a
-- second value).
local function run_chunk(chunk, env, ...)
  instantiate(chunk, env)(env, ...)
  return signal
end

-- Rust reports argument errors as (signal, message); raising them here, at the caller's level,
-- gives plain string errors with the script's chunk:line, like luaL_argerror does.
local function checked(fn)
  return function(...)
    local a, b = fn(...)
    if a == signal then
      error(b, 2)
    end
    if b == nil then
      return a
    end
    return a, b
  end
end

for _, name in ipairs(P.checked) do
  ngx[name] = checked(impl[name])
end
for name, fn in pairs(impl.req) do
  ngx.req[name] = checked(fn)
end

-- Waits (DESIGN.md §5): Rust registers the wait and returns its id; the phase yields
-- (signal, "wait") to the engine, which resumes it with (id, true, results...) or
-- (id, false, message) once the wait completes. Both helpers are tail-called, so level 2 of
-- the error below is the script that waited.
local function finish_wait(_, ok, ...)
  if ok then
    return ...
  end
  error((...), 2)
end

local function engine_wait(id)
  return finish_wait(co_yield(signal, "wait", id))
end

-- A Rust function that may start a wait: it returns the wait's id, nothing when there is
-- nothing to wait for, or (signal, message) for an argument error.
local function waiting(fn)
  return function(...)
    local id, err = fn(...)
    if id == signal then
      error(err, 2)
    end
    if id ~= nil then
      return engine_wait(id)
    end
  end
end

ngx.sleep = waiting(impl.sleep)
ngx.req.read_body = waiting(impl.req.read_body)

-- ngx.req.set_uri(uri, true) in rewrite ends the phase (nginx then matches locations again).
local req_set_uri = impl.req.set_uri
ngx.req.set_uri = function(...)
  local jump, err = req_set_uri(...)
  if jump == signal then
    error(err, 2)
  end
  if jump then
    return co_yield(signal, "exit")
  end
end
ngx.resp = {}
for name, fn in pairs(impl.resp) do
  ngx.resp[name] = checked(fn)
end
-- ngx.header.X reads and writes the response headers (the proxy itself stays empty).
ngx.header = setmetatable({}, { __index = checked(impl.header_get), __newindex = checked(impl.header_set) })

-- ngx.exit and ngx.redirect end the running handler: the engine sees the signal and never
-- resumes it.
local function exiting(fn)
  return function(...)
    local a, b = fn(...)
    if a == signal then
      error(b, 2)
    end
    return co_yield(signal, "exit")
  end
end

ngx.exit = exiting(impl.exit)
ngx.redirect = exiting(impl.redirect)

-- Fields of `ngx` that belong to the running request.
local getters = { ctx = impl.get_ctx, status = impl.get_status, headers_sent = impl.headers_sent }
local setters = { ctx = impl.set_ctx, status = impl.set_status }
setmetatable(ngx, {
  __index = function(_, key)
    local get = getters[key]
    if get then
      local value, err = get()
      if value == signal then
        error(err, 2)
      end
      return value
    end
  end,
  __newindex = function(t, key, value)
    local set = setters[key]
    if not set then
      return rawset(t, key, value)
    end
    local a, b = set(value)
    if a == signal then
      error(b, 2)
    end
  end,
})

local var_get = impl.var_get
ngx.var = setmetatable({}, {
  __index = function(_, name)
    local a, b = var_get(name)
    if a == signal then
      error(b, 2)
    end
    return a
  end,
  __newindex = checked(impl.var_set),
})

-- lua-resty-core's lookup rule for the tables get_headers returns: h["X-Token"], h.x_token.
P.headers_mt.__index = function(t, key)
  if type(key) == "string" then
    return rawget(t, (gsub(lower(key), "_", "-")))
  end
end

-- Engine signals (ngx.exit, and waits in later phases) must reach the engine even from inside
-- user coroutines: a coroutine that yields a signal hands it to its own resumer, and the answer
-- comes back down. Plain user yields behave as in stock Lua.
local function pass_up(co, ok, ...)
  if ok and (...) == signal and co_status(co) == "suspended" then
    return pass_up(co, co_resume(co, co_yield(...)))
  end
  return ok, ...
end

-- Once a phase has spent its instruction budget, protected calls re-raise the stop instead of
-- swallowing it, so `while true do pcall(f) end` cannot outlive its budget.
local budget_spent = P.budget_spent
local function rethrow_if_spent(ok, ...)
  if not ok and budget_spent and budget_spent() then
    return error((...), 0)
  end
  return ok, ...
end

local function resume(co, ...)
  return rethrow_if_spent(pass_up(co, co_resume(co, ...)))
end

local raw_pcall, raw_xpcall = pcall, xpcall
local function budget_pcall(...)
  return rethrow_if_spent(raw_pcall(...))
end
local function budget_xpcall(...)
  return rethrow_if_spent(raw_xpcall(...))
end

local function unwrap(ok, ...)
  if ok then
    return ...
  end
  return error((...), 0)
end

local function wrap(fn)
  local co = co_create(fn)
  return function(...)
    return unwrap(resume(co, ...))
  end
end

local coroutine_lib = {
  create = co_create,
  resume = resume,
  yield = co_yield,
  status = co_status,
  wrap = wrap,
  running = coroutine.running,
  isyieldable = coroutine.isyieldable,
  close = coroutine.close,
}

-- `require` through the engine's code cache; modules share one environment per worker.
local loaded, preload, module_env = P.loaded, P.preload, P.module_env

-- For Rust functions with any number of results: an error comes back as (signal, message) and
-- is raised at the script's level (callers tail-call this, so level 2 is the script; `error`
-- must not be tail-called itself); results pass through whatever their number.
local function raise_or_return(...)
  if ... == signal then
    error((select(2, ...)), 2)
  end
  return ...
end

local host = {}
for name, fn in pairs(P.host.sync) do
  host[name] = function(...)
    return raise_or_return(fn(...))
  end
end
for name, fn in pairs(P.host.async) do
  host[name] = waiting(fn)
end
preload.host = function()
  return host
end

-- ngx.shared.DICT, as lua-resty-core builds it: each dict is { zone } sharing one metatable,
-- and methods check their `zone` argument (a dot instead of a colon is a clear error).
local dict_index = {}
for name, fn in pairs(P.dict_methods) do
  dict_index[name] = function(zone, ...)
    local index = type(zone) == "table" and rawget(zone, 1)
    if type(index) ~= "number" then
      error('bad "zone" argument', 2)
    end
    return raise_or_return(fn(index, ...))
  end
end
local dict_mt = { __index = dict_index, __metatable = false }
ngx.shared = {}
for index, name in ipairs(P.dict_names) do
  ngx.shared[name] = setmetatable({ index - 1 }, dict_mt)
end
local find_module, fallback_require = impl.find_module, P.fallback_require
local LOADING = {}

local function require(name)
  if type(name) ~= "string" then
    return error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
  end
  local value = loaded[name]
  if value == LOADING then
    return error("loop or previous error loading module '" .. name .. "'", 2)
  end
  if value ~= nil then
    return value
  end
  local loader, where = preload[name], ":preload:"
  if not loader then
    local chunk, path_or_err = find_module(name)
    if chunk == false then
      return error(path_or_err, 2)
    end
    if not chunk then
      if fallback_require then
        return fallback_require(name)
      end
      return error("module '" .. name .. "' not found:" .. path_or_err, 2)
    end
    where = path_or_err
    loader = function(...)
      return instantiate(chunk, module_env)(module_env, ...)
    end
  end
  loaded[name] = LOADING
  local ok, result = raw_pcall(loader, name, where)
  if not ok then
    loaded[name] = nil
    return error(result, 0)
  end
  if result == nil then
    result = loaded[name] ~= LOADING and loaded[name] or true
  end
  loaded[name] = result
  return result
end

-- Text-only `load` for the sandbox: binary chunks crash Lua. Chunks default to the globals of
-- the request that loads them.
local raw_load, current_env = load, impl.current_env
local function text_load(chunk, name, _, env)
  if type(chunk) == "string" and chunk:byte(1) == 27 then
    return nil, "attempt to load a binary chunk"
  end
  if env == nil then
    env = current_env() or module_env
  end
  return raw_load(chunk, name, "t", env)
end

return {
  run_chunk = run_chunk,
  load = text_load,
  pcall = budget_spent and budget_pcall or raw_pcall,
  xpcall = budget_spent and budget_xpcall or raw_xpcall,
  coroutine = coroutine_lib,
  require = require,
  checked = checked,
}
