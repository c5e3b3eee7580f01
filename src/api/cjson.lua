-- `require "cjson"` and `require "cjson.safe"`: lua-cjson's module tables around the Rust
-- functions of cjson.rs, which return their results or (signal, message). lua-cjson raises its
-- errors from C, so they carry no chunk:line: level 0.
local P = ...
local signal, functions = P.signal, P.functions
local error, pairs, select = error, pairs, select

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

P.preload.cjson = function()
  return new(false)
end
P.preload["cjson.safe"] = function()
  return new(true)
end
