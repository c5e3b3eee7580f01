//! `ngx.re.match`, `find`, `gmatch`, `sub` and `gsub` with an arbitrary pattern, options,
//! subject and replacement (input: `pattern\0options\0subject\0replacement`, passed as the
//! request body so one compiled script serves every run). Bad patterns and options must be
//! errors or `nil, err`, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

static SCRIPT: luaengine_fuzz::FixedScript = luaengine_fuzz::FixedScript::new(
    r#"
ngx.req.read_body()
local input = ngx.req.get_body_data() or ""
local fields, from = {}, 1
for i = 1, 3 do
  local at = string.find(input, "\0", from, true)
  if not at then
    break
  end
  fields[i] = string.sub(input, from, at - 1)
  from = at + 1
end
fields[#fields + 1] = string.sub(input, from)
local pattern, options, subject, replacement = fields[1] or "", fields[2] or "", fields[3] or "", fields[4] or ""
local re = ngx.re
pcall(re.match, subject, pattern, options)
pcall(re.match, subject, pattern, options, nil, {})
pcall(re.find, subject, pattern, options)
pcall(re.find, subject, pattern, options, nil, 1)
pcall(re.sub, subject, pattern, replacement, options)
pcall(re.gsub, subject, pattern, replacement, options)
pcall(re.gsub, subject, pattern, function(m) return m[0] .. (m[1] or "") end, options)
local ok, iterator = pcall(re.gmatch, subject, pattern, options)
if ok and iterator then
  for _ = 1, 100 do
    local step, m = pcall(iterator)
    if not step or not m then
      break
    end
  end
end
"#,
);

fuzz_target!(|data: &[u8]| {
    let _ = SCRIPT.run(data);
});
