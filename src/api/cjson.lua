-- `require "cjson"` and `require "cjson.safe"`: lua-cjson's module tables around the Rust
-- functions of cjson.rs, which return their results or (signal, message). lua-cjson raises its
-- errors from C, so they carry no chunk:line: level 0.
local P = ...
local signal, functions = P.signal, P.functions
local error, pairs, ipairs, select, next, type = error, pairs, ipairs, select, next, type

local function raise_or_return(first, ...)
  if first == signal then
    error(..., 0)
  end
  return first, ...
end

local function raising(fn)
  return function(...)
    return raise_or_return(fn(...))
  end
end

-- cjson.safe's encode/decode return nil, err instead, but still raise on a wrong argument
-- count, as lua-cjson checks it before its protected call.
local function protected(name, fn)
  return function(...)
    if select("#", ...) ~= 1 then
      error("bad argument #1 to '" .. name .. "' (expected 1 argument)", 0)
    end
    local value, err = fn(...)
    if value == signal then
      return nil, err
    end
    return value
  end
end

local function new(safe)
  local cjson = {
    null = P.null,
    empty_array = P.empty_array,
    array_mt = P.array_mt,
    empty_array_mt = P.empty_array_mt,
    _NAME = "cjson",
    _VERSION = "2.1.0.11",
  }
  -- A fresh configuration for every module table, as lua-cjson's new() gives.
  for name, fn in pairs(functions()) do
    cjson[name] = raising(fn)
    if safe and (name == "encode" or name == "decode") then
      cjson[name] = protected(name, fn)
    end
  end
  cjson.new = function()
    return new(safe)
  end
  return cjson
end

-- In the sandbox the module `require` gives is the worker's, read-only (sandbox.lua). Request
-- code calling its configuration functions configures a copy for that request alone, which
-- its encode and decode then use; worker code (init, module bodies: `scope` answers nil)
-- configures the worker's, as in OpenResty.
local scope = P.scope
local function per_request(safe)
  local shared = new(safe)
  local copies = setmetatable({}, { __mode = "k" })
  local module, setters = {}, {}
  for name, value in pairs(shared) do
    module[name] = value
    if type(value) == "function" and name ~= "new" and name ~= "encode" and name ~= "decode" then
      setters[name] = value
    end
  end
  for _, name in ipairs({ "encode", "decode" }) do
    local fn = shared[name]
    module[name] = function(...)
      -- While no request has a copy, which request runs does not matter.
      if next(copies) ~= nil then
        local key = scope()
        local copy = key and copies[key]
        if copy then
          return copy[name](...)
        end
      end
      return fn(...)
    end
  end
  for name, fn in pairs(setters) do
    module[name] = function(...)
      local key = scope()
      local copy = key and copies[key]
      if not copy then
        if not key or select("#", ...) == 0 then
          return fn(...)
        end
        -- The request's copy starts from the worker's settings.
        copy = new(safe)
        for setting, get in pairs(setters) do
          copy[setting](get())
        end
        copies[key] = copy
      end
      return copy[name](...)
    end
  end
  return module
end

P.preload.cjson = function()
  return scope and per_request(false) or new(false)
end
P.preload["cjson.safe"] = function()
  return scope and per_request(true) or new(true)
end
