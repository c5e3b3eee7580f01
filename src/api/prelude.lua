-- Runs once in every worker, before any script. Rust hands over the pieces it built (P) and
-- keeps what this returns. Everything here is private to the engine: scripts only see what is
-- put into `ngx` and the base environment.
local P = ...
local ngx, impl, signal, base = P.ngx, P.impl, P.signal, P.base
local setfenv = P.setfenv
local co_create, co_resume, co_yield, co_status = coroutine.create, coroutine.resume, coroutine.yield, coroutine.status
-- Lua 5.4: the engine's watchdog stops a runaway script by hooking the coroutines running, so
-- every resume tells it which one runs now (lua/interrupt.rs).
if P.track_enter then
  local raw_resume, enter, leave = co_resume, P.track_enter, P.track_leave
  co_resume = function(co, ...)
    if type(co) ~= "thread" then
      return raw_resume(co, ...)
    end
    enter(co)
    return leave(raw_resume(co, ...))
  end
end
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

-- A phase reuses its script's closure rather than making one per run. On Lua 5.4 the globals
-- are its `_ENV` argument, so one closure serves every run. On LuaJIT they are the closure's
-- environment: a closure is lent to one run at a time (one suspended in a wait is not handed
-- to another request) and parked with an empty environment so it keeps no request alive.
local idle, parked_env = setmetatable({}, { __mode = "k" }), {}
local function borrow(chunk, env)
  local f = idle[chunk]
  if not f then
    return instantiate(chunk, env)
  end
  if setfenv then
    idle[chunk] = nil
    setfenv(f, env)
  end
  return f
end
local function give_back(chunk, f)
  if setfenv then
    setfenv(f, parked_env)
  end
  idle[chunk] = f
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
-- Up to four strings, the common case, go joined to the Rust function that takes one string
-- as it is; anything else goes through the generic conversion of the arguments.
for _, name in ipairs({ "say", "print" }) do
  local any, one_string, select = ngx[name], checked(impl[name .. "_string"]), select
  ngx[name] = function(...)
    local n, a, b, c, d = select("#", ...), ...
    if type(a) == "string" and n <= 4 then
      if n == 1 then
        return one_string(a)
      elseif n == 2 and type(b) == "string" then
        return one_string(a .. b)
      elseif n == 3 and type(b) == "string" and type(c) == "string" then
        return one_string(a .. b .. c)
      elseif n == 4 and type(b) == "string" and type(c) == "string" and type(d) == "string" then
        return one_string(a .. b .. c .. d)
      end
    end
    return any(...)
  end
end
for name, fn in pairs(impl.ngx) do
  ngx[name] = checked(fn)
end
for name, fn in pairs(impl.req) do
  ngx.req[name] = checked(fn)
end

-- Waits (DESIGN.md §5). Rust registers a wait and returns its id; the waiting coroutine
-- yields (signal, "wait", id). A light thread's yield is caught by the scheduler below; the
-- entry thread's reaches the engine, which resumes it with (id, true, results...) or
-- (id, false, message) for whichever wait completed — its own, or a light thread's, which it
-- dispatches before waiting on.
local current_threads, check_yield = impl.current_threads, impl.check_yield
local current_env = impl.current_env
local unpack = unpack or table.unpack

-- The light threads of the running phase: kept by the request (see RequestState::threads), or
-- (signal, message) outside a phase that may yield.
local function running_set(new)
  local set = current_threads(new)
  if set ~= signal then
    return set
  end
end

-- Spawns so far, in any request: a phase that saw none spawned has no light threads to wait for.
local spawns = 0

local function pack(...)
  return { n = select("#", ...), ... }
end

local step

local function dispatch(id, ...)
  local set = id and running_set()
  local thread = set and set.waiting[id]
  if thread then
    set.waiting[id] = nil
    step(set, thread, id, ...)
  end
end

-- Both are tail-called, so level 2 of the error is the script that waited.
local engine_wait
local function finish_wait(id, got, ok, ...)
  if got ~= id then
    dispatch(got, ok, ...)
    return engine_wait(id)
  end
  if ok then
    return ...
  end
  error((...), 2)
end

function engine_wait(id)
  return finish_wait(id, co_yield(signal, "wait", id))
end

-- Light threads that yielded plainly run again here, before anyone waits on the engine.
local function run_ready(set)
  local ready = set.ready
  if #ready == 0 then
    return false
  end
  set.ready = {}
  for i = 1, #ready do
    step(set, ready[i])
  end
  return true
end

-- Lets the phase make progress: runs ready threads, or waits for any event and dispatches it.
-- (Id 0 matches no wait: in a light thread the scheduler parks it until some thread ends.)
local function wait_any(set)
  if not run_ready(set) then
    return dispatch(co_yield(signal, "wait", 0))
  end
end

local function settle(set, thread, ok, ...)
  if co_status(thread) == "dead" then
    set.alive = set.alive - 1
    set.results[thread] = pack(ok, ...)
    if not ok then
      ngx.log(ngx.ERR, "lua user thread aborted: ", (...))
    end
    local joining = set.joining
    set.joining = {}
    for joiner in pairs(joining) do
      step(set, joiner)
    end
    return
  end
  if ok and ... == signal then
    local _, kind, id = ...
    if kind ~= "wait" then
      -- ngx.exit in a light thread ends the request: hand it on to the engine.
      return co_yield(...)
    end
    if id == 0 then
      set.joining[thread] = true
    else
      set.waiting[id] = thread
    end
    return
  end
  set.ready[#set.ready + 1] = thread
end

function step(set, thread, ...)
  return settle(set, thread, co_resume(thread, ...))
end

local function thread_set()
  return running_set() or running_set({
    alive = 0, parent = {}, waiting = {}, joining = {}, ready = {}, results = {}, reaped = {},
  })
end

-- The threads `wait`/`kill` were given, checked as lua-nginx-module checks them.
local function own_threads(api, verb, set, ...)
  local me = coroutine.running()
  for i = 1, select("#", ...) do
    local thread = select(i, ...)
    if type(thread) ~= "thread" then
      error("bad argument #" .. i .. " to '" .. api .. "' (lua thread expected)", 3)
    end
    if set.parent[thread] == nil then
      error("attempt to " .. verb .. " a coroutine that is not a user thread", 3)
    end
    if set.parent[thread] ~= me then
      error("only the parent coroutine can " .. verb .. " the thread", 3)
    end
  end
end

local function yieldable(api)
  local a, b = check_yield(api)
  if a == signal then
    error(b, 3)
  end
end

ngx.thread = {
  spawn = function(fn, ...)
    yieldable("ngx.thread.spawn")
    if type(fn) ~= "function" then
      error("bad argument #1 to 'spawn' (function expected, got " .. type(fn) .. ")", 2)
    end
    local set = thread_set()
    spawns = spawns + 1
    local thread = co_create(fn)
    set.parent[thread] = coroutine.running()
    set.alive = set.alive + 1
    step(set, thread, ...)
    return thread
  end,

  wait = function(...)
    yieldable("ngx.thread.wait")
    local set = thread_set()
    own_threads("wait", "wait on", set, ...)
    while true do
      for i = 1, select("#", ...) do
        local thread = select(i, ...)
        local results = set.results[thread]
        if results then
          set.results[thread] = nil
          set.reaped[thread] = true
          return unpack(results, 1, results.n)
        end
        if set.reaped[thread] then
          return nil, "already waited or killed"
        end
      end
      wait_any(set)
    end
  end,

  kill = function(thread)
    yieldable("ngx.thread.kill")
    local set = thread_set()
    own_threads("kill", "kill", set, thread)
    if set.reaped[thread] then
      return nil, "already waited or killed"
    end
    set.reaped[thread] = true
    if set.results[thread] then
      set.results[thread] = nil
      return nil, "already terminated"
    end
    -- Its wait, if any, still completes; the completion then finds no one and is dropped.
    for id, waiting in pairs(set.waiting) do
      if waiting == thread then
        set.waiting[id] = nil
      end
    end
    set.joining[thread] = nil
    for i = #set.ready, 1, -1 do
      if set.ready[i] == thread then
        table.remove(set.ready, i)
      end
    end
    set.alive = set.alive - 1
    return 1
  end,
}

-- Every phase run is one resume of this on a pooled coroutine, with the request's globals as
-- `env` (`fresh` on its first phase). A phase ends when its entry thread and all its light
-- threads have. Yielding the signal alone tells the engine the script finished (engine yields
-- carry a second value); the coroutine waits there, holding nothing of the request, until the
-- engine resumes it with the next phase run: a pooled coroutine needs no reset.
local function run_chunk(chunk, env, fresh, ...)
  if fresh then
    -- `ngx` is a field of the globals, as in OpenResty, rather than a miss that falls through
    -- to the base environment on every use.
    env._G, env.ngx = env, base.ngx
  end
  local spawned = spawns
  local f = borrow(chunk, env)
  f(env, ...)
  give_back(chunk, f)
  local set = spawns ~= spawned and running_set()
  if set then
    while set.alive > 0 do
      wait_any(set)
    end
  end
  chunk, env, set, f = nil, nil, nil, nil
  return run_chunk(co_yield(signal))
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
-- ngx.arg[1] and ngx.arg[2] in body_filter: the chunk and the eof flag.
ngx.arg = setmetatable({}, { __index = impl.arg_get, __newindex = checked(impl.arg_set) })
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

-- Fields of `ngx` that belong to the running request. Other new fields go into the worker's
-- `ngx` (trusted scripts may add some, as in OpenResty), but not through the sandbox's
-- read-only proxy of `ngx` (sandbox.lua), which shares this __newindex.
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
      if t ~= ngx then
        error("attempt to modify read-only table 'ngx'", 2)
      end
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
    if type(name) == "number" then
      return nil
    end
    local value, err = var_get(name)
    if err then
      error(err, 2)
    end
    return value
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

-- ngx.shared.DICT: each dict is an empty table sharing one metatable of methods (so the
-- sandbox can make it read-only), whose zone the methods find in `zones`; a dot instead of a
-- colon is lua-resty-core's clear error.
-- Rust answers (count, a, b, c) (see shdict.rs): the first `count` values, or an argument
-- error to raise when the count is -1. Tail-called, so level 2 is the script.
local function dict_results(n, a, b, c)
  if n == 1 then
    return a
  elseif n == 3 then
    return a, b, c
  elseif n == 2 then
    return a, b
  elseif n == 0 then
    return
  end
  error(a, 2)
end
local zones = {}
local dict_index = {}
for name, fn in pairs(P.dict_methods) do
  -- Methods take at most four arguments: fixed parameters spare a vararg call.
  dict_index[name] = function(zone, a, b, c, d)
    local index = zones[zone]
    if not index then
      error('bad "zone" argument', 2)
    end
    return dict_results(fn(index, a, b, c, d))
  end
end
local dict_names = P.dict_names
local dict_mt = {
  __index = dict_index,
  __newindex = function(zone)
    error("attempt to modify read-only table 'ngx.shared." .. dict_names[zones[zone] + 1] .. "'", 2)
  end,
}
ngx.shared = {}
for index, name in ipairs(dict_names) do
  local dict = setmetatable({}, dict_mt)
  zones[dict] = index - 1
  ngx.shared[name] = dict
end
local find_module, fallback_require = impl.find_module, P.fallback_require
local LOADING = {}
-- Names the sandbox answers itself (filled by sandbox.lua): its libraries and built-in modules,
-- read-only, and false for the modules it hides. Empty for trusted scripts.
local builtins = P.builtins

-- In the sandbox, package.loaded and package.preload are views (DESIGN.md §6). Code that runs
-- once per worker (init, init_worker, the body of a module loading into the worker) reads and
-- writes the worker's tables; request code (a timer's included) writes tables of its own,
-- which it reads first, `require` included, and which go with it. Built-in names are refused.
-- Trusted scripts share the worker's tables, as in OpenResty.
local isolated = P.isolated
local co_running = coroutine.running
-- The request's own tables by its globals; FORGOTTEN is its `package.loaded.x = nil`, which
-- hides the worker's entry from it.
local own_by_env = setmetatable({}, { __mode = "k" })
local FORGOTTEN = {}
-- Coroutines running a module body for the worker (true) or for a request (false).
local worker_code = setmetatable({}, { __mode = "k" })

-- The running request's globals, or nil for worker code.
local function request_scope()
  local env = current_env()
  if env ~= nil and env ~= base and not worker_code[co_running() or base] then
    return env
  end
end

-- The running request's own tables (created if `create`), or nil for worker code. A worker
-- where no request has tables of its own answers without asking for the current request.
local function own_tables(create)
  if not isolated or (not create and next(own_by_env) == nil) then
    return nil
  end
  local env = request_scope()
  if env == nil then
    return nil
  end
  local own = own_by_env[env]
  if own == nil and create then
    own = { loaded = {}, preload = {} }
    own_by_env[env] = own
  end
  return own
end

-- View -> a function listing its entries, for `pairs` (sandbox.lua).
local listings = {}

local function view(field, shared)
  local function get(_, name)
    local own = own_tables(false)
    local value = own and own[field][name]
    if value == nil then
      if field == "loaded" and builtins[name] ~= nil then
        return builtins[name] or nil
      end
      value = shared[name]
    end
    if value ~= FORGOTTEN and value ~= LOADING then
      return value
    end
  end
  local function set(_, name, value)
    if builtins[name] ~= nil then
      error("attempt to replace built-in module '" .. tostring(name) .. "'", 2)
    end
    local own = own_tables(true)
    if own then
      own[field][name] = value == nil and FORGOTTEN or value
    else
      shared[name] = value
    end
  end
  local function list()
    local entries = {}
    if field == "loaded" then
      for name, module in next, builtins do
        entries[name] = module or nil
      end
    end
    local own = own_tables(false)
    for _, source in ipairs({ shared, own and own[field] or {} }) do
      for name, value in next, source do
        if value == FORGOTTEN or value == LOADING then
          value = nil
        end
        entries[name] = value
      end
    end
    return entries
  end
  local view_table = setmetatable({}, { __index = get, __newindex = set })
  listings[view_table] = list
  return view_table
end

-- Runs `loader` as worker code or as request code, whichever the module is loaded for.
local function run_loader(for_worker, loader, name, where)
  if not isolated then
    return raw_pcall(loader, name, where)
  end
  local co = co_running() or base
  local outer = worker_code[co]
  worker_code[co] = for_worker
  local ok, result = raw_pcall(loader, name, where)
  worker_code[co] = outer
  return ok, result
end

-- Errors are raised with `error(msg, 2)` as a statement: as a tail call (`return error(...)`)
-- LuaJIT drops require's frame and level 2 is no longer the caller.
local function require(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
  end
  local builtin = builtins[name]
  if builtin ~= nil then
    return builtin or error("module '" .. name .. "' is not available in the sandbox", 2)
  end
  -- `into`: the package.loaded the module is found in or goes to, the request's own when it
  -- has an entry for the name (or a loader of its own), else the worker's.
  local own = own_tables(false)
  local into, value = loaded, nil
  if own then
    value = own.loaded[name]
    into = value ~= nil and own.loaded or loaded
  end
  if into == loaded then
    value = loaded[name]
  end
  if value == LOADING then
    error("loop or previous error loading module '" .. name .. "'", 2)
  end
  if value ~= nil and value ~= FORGOTTEN then
    return value
  end
  local loader, where = own and own.preload[name], ":preload:"
  if loader == nil then
    loader = preload[name]
  elseif loader ~= FORGOTTEN then
    into = own.loaded
  end
  if not loader or loader == FORGOTTEN then
    local chunk, path_or_err = find_module(name)
    if chunk == false then
      error(path_or_err, 2)
    end
    if not chunk then
      if fallback_require then
        return fallback_require(name)
      end
      error("module '" .. name .. "' not found:" .. path_or_err, 2)
    end
    where = path_or_err
    loader = function(...)
      return instantiate(chunk, module_env)(module_env, ...)
    end
  end
  into[name] = LOADING
  local ok, result = run_loader(into == loaded, loader, name, where)
  if not ok then
    into[name] = value
    return error(result, 0)
  end
  if result == nil then
    result = into[name] ~= LOADING and into[name] or true
  end
  into[name] = result
  return result
end

-- math.randomseed seeds the worker's one generator: in the sandbox only worker code may, as a
-- request that seeds would make the math.random of every later request predictable.
if isolated then
  local randomseed = base.math.randomseed
  base.math.randomseed = function(...)
    if request_scope() then
      error("'randomseed' is not allowed in a request in the sandbox (it seeds the whole worker: seed in init_worker)", 2)
    end
    return randomseed(...)
  end
end

-- Text-only `load` for the sandbox: binary chunks crash Lua. Chunks default to the globals of
-- the request that loads them.
local raw_load = load
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
  request_scope = isolated and request_scope or nil,
  package_loaded = isolated and view("loaded", loaded),
  package_preload = isolated and view("preload", preload),
  modules = { loaded = loaded, preload = preload, listings = listings },
  run_chunk = run_chunk,
  load = text_load,
  pcall = budget_spent and budget_pcall or raw_pcall,
  xpcall = budget_spent and budget_xpcall or raw_xpcall,
  coroutine = coroutine_lib,
  require = require,
  checked = checked,
}
