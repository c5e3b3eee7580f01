-- A module found through lua.package_path: a tiny JSON encoder for flat tables.
local M = {}

local function quote(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function M.encode(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    parts[#parts + 1] = quote(k) .. ":" .. (type(v) == "number" and tostring(v) or quote(v))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

return M
