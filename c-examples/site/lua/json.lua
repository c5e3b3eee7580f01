-- A small JSON encoder (found through lua.package_path in site.json): strings, numbers,
-- booleans, arrays (tables with keys 1..n) and objects, whose keys it sorts so that the output
-- is stable.
local json = {}

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return n > 0
end

local encode

local function encode_table(t)
  local parts = {}
  if is_array(t) then
    for i = 1, #t do parts[i] = encode(t[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    parts[i] = encode_string(k) .. ":" .. encode(v)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

encode = function(v)
  local kind = type(v)
  if kind == "string" then return encode_string(v) end
  if kind == "number" then return string.format("%.14g", v) end
  if kind == "boolean" then return tostring(v) end
  if kind == "table" then return encode_table(v) end
  return "null"
end

json.encode = encode
return json
