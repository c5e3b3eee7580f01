-- ngx.re: the Rust functions (re.rs) return their results, or (signal, message) for an
-- argument error, raised here at the script's level. sub/gsub with a function replacement loop
-- here so that the function runs as plain Lua.
local P = ...
local signal, rust = P.signal, P.rust
local error, select, tostring, type = error, select, tostring, type
local sub, concat = string.sub, table.concat
local match, find, gmatch, substitute, exec = rust.match, rust.find, rust.gmatch, rust.substitute, rust.exec

-- Callers tail-call this, so level 2 is the script.
local function raise_or_return(...)
  if ... == signal then
    error((select(2, ...)), 2)
  end
  return ...
end

-- Tail-called by sub/gsub: level 2 is the script.
local function with_function(api, subject, regex, replace, opts, global)
  subject = tostring(subject)
  local len, start, copied, count, parts = #subject, 0, 0, 0, {}
  while start <= len do
    local captures, from, to, next_start = exec(api, subject, regex, opts, start)
    if captures == signal then
      error(from, 2)
    end
    if not captures then
      if from then
        return nil, nil, from
      end
      break
    end
    count = count + 1
    parts[#parts + 1] = sub(subject, copied + 1, from)
    parts[#parts + 1] = tostring(replace(captures))
    copied, start = to, next_start
    if not global then
      break
    end
  end
  if count == 0 then
    return subject, 0
  end
  parts[#parts + 1] = sub(subject, copied + 1)
  return concat(parts), count
end

return {
  match = function(...)
    return raise_or_return(match(...))
  end,
  find = function(...)
    return raise_or_return(find(...))
  end,
  gmatch = function(...)
    return raise_or_return(gmatch(...))
  end,
  sub = function(subject, regex, replace, opts)
    if type(replace) == "function" then
      return with_function("sub", subject, regex, replace, opts, false)
    end
    return raise_or_return(substitute(subject, regex, replace, opts, false))
  end,
  gsub = function(subject, regex, replace, opts)
    if type(replace) == "function" then
      return with_function("gsub", subject, regex, replace, opts, true)
    end
    return raise_or_return(substitute(subject, regex, replace, opts, true))
  end,
}
