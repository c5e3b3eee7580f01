//! `cjson.decode` and `cjson.safe.decode` of arbitrary text, and the round trip of what
//! decodes: text `encode` produced must decode again (a failure there is a bug, reported as a
//! panic). The input travels as the request body, so one compiled script serves every run.
#![no_main]

use libfuzzer_sys::fuzz_target;

static SCRIPT: luaengine_fuzz::FixedScript = luaengine_fuzz::FixedScript::new(
    r#"
local cjson, safe = require "cjson", require "cjson.safe"
ngx.req.read_body()
local text = ngx.req.get_body_data() or ""
pcall(cjson.decode, text)
local value = safe.decode(text)
if value == nil then
  return
end
local encoded = safe.encode(value)
if encoded then
  local ok, err = pcall(cjson.decode, encoded)
  if not ok then
    error("ROUNDTRIP: " .. tostring(err) .. " decoding " .. encoded, 0)
  end
  safe.encode(cjson.decode(encoded))
end
"#,
);

fuzz_target!(|data: &[u8]| {
    if let Err(message) = SCRIPT.run(data) {
        assert!(!message.contains("ROUNDTRIP"), "{message}");
    }
});
