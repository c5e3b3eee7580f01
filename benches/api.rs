//! ns per operation of ngx.re and cjson, each next to the same work in plain Lua measured in the
//! same run (and, when Debian's `lua5.4` and `lua-cjson` are installed, lua-cjson itself under
//! plain Lua 5.4 as a reference):
//!   ngx.re.match with a cached pattern ("jo")  vs  string.match / string.find with a Lua pattern
//!   cjson.encode / cjson.decode of a 1 KB object  vs  a small pure-Lua JSON encoder / decoder
//! Each figure is one content script looping over the operation, divided by the loop count
//! (the median of several timed runs), so the request's own cost is spread thin.
//! Run: `cargo bench --bench api` (add `--no-default-features --features lua54` for Lua 5.4).

use std::process::Command;
use std::time::{Duration, Instant};

use luaengine::{Engine, EngineConfig, Phase, RequestInit};

const SUBJECT: &str = "GET /api/v1/users/12345/profile?expand=true&fields=name,email HTTP/1.1";

/// A Lua chunk returning the ~1 KB document the JSON cases encode.
const DOCUMENT: &str = r#"
local items = {}
for i = 1, 8 do
  items[i] = { id = i, sku = "SKU-" .. (1000 + i), price = i * 3.25, qty = i % 3 + 1, tags = { "new", "sale" } }
end
return {
  id = 12345, name = "Ada Lovelace", email = "ada@example.com", active = true, score = 98.6,
  address = { street = "12 Analytical Way", city = "London", zip = "NW1", country = "GB" },
  items = items, note = "multi-line\ntext with \"quotes\" and / slashes",
}
"#;

/// Plain-Lua JSON, as a script without a C library would do it: enough for the document above.
const PURE_LUA_JSON: &str = r#"
local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['/'] = '\\/', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function encode(v)
  local t = type(v)
  if t == "string" then return '"' .. v:gsub('[%c"\\/]', function(c) return escapes[c] or string.format("\\u%04x", c:byte()) end) .. '"' end
  if t == "number" then return string.format("%.14g", v) end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then return "null" end
  local out = {}
  if #v > 0 then
    for i = 1, #v do out[i] = encode(v[i]) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  for k, x in pairs(v) do out[#out + 1] = encode(tostring(k)) .. ":" .. encode(x) end
  return "{" .. table.concat(out, ",") .. "}"
end
local unescapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
local decode_value
local function skip(s, i) return (s:find("[^ \t\r\n]", i)) end
local function decode_string(s, i)
  local out, j = {}, i + 1
  while true do
    local k = s:find('["\\]', j)
    out[#out + 1] = s:sub(j, k - 1)
    if s:sub(k, k) == '"' then return table.concat(out), k + 1 end
    local c = s:sub(k + 1, k + 1)
    out[#out + 1] = unescapes[c] or c
    j = k + 2
  end
end
function decode_value(s, i)
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local t = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return t, i + 1 end
    while true do
      local k
      k, i = decode_string(s, skip(s, i))
      t[k], i = decode_value(s, skip(s, i) + 1)
      i = skip(s, i)
      if s:sub(i, i) == "}" then return t, i + 1 end
      i = i + 1
    end
  elseif c == "[" then
    local t = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return t, i + 1 end
    while true do
      t[#t + 1], i = decode_value(s, i)
      i = skip(s, i)
      if s:sub(i, i) == "]" then return t, i + 1 end
      i = i + 1
    end
  elseif c == '"' then return decode_string(s, i)
  elseif s:find("^true", i) then return true, i + 4
  elseif s:find("^false", i) then return false, i + 5
  elseif s:find("^null", i) then return nil, i + 4
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  return tonumber(num), i + #num
end
return { encode = encode, decode = function(s) return (decode_value(s, 1)) end }
"#;

const LOOPS: usize = 20_000;

/// Median ns per operation: `body` runs `LOOPS` times inside one content script, after `setup`.
fn per_op(engine: &Engine, rounds: usize, setup: &str, body: &str) -> f64 {
    let source = format!("{setup}\nfor _ = 1, {LOOPS} do {body} end");
    let script = engine.compile("content", source).expect("bench script compiles");
    let init = RequestInit { method: b"GET", path: b"/t", ..Default::default() };
    let run = || {
        let mut request = engine.new_request(&init, [], None);
        request.run(Phase::Content, &script).expect("bench script runs");
    };
    run();
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[rounds / 2].as_nanos() as f64 / LOOPS as f64
}

/// lua-cjson under Debian's plain Lua 5.4, timed by the same loop in Lua: (encode, decode) ns.
fn lua_cjson_reference(rounds: usize) -> Option<(f64, f64)> {
    let script = format!(
        r#"local cjson = require "cjson"
           local doc = (function() {DOCUMENT} end)()
           local json = cjson.encode(doc)
           local function median(f)
             local samples = {{}}
             for r = 1, {rounds} do
               local t0 = os.clock()
               for _ = 1, {LOOPS} do f() end
               samples[r] = os.clock() - t0
             end
             table.sort(samples)
             return samples[{half}] / {LOOPS} * 1e9
           end
           print(median(function() cjson.encode(doc) end), median(function() cjson.decode(json) end))"#,
        half = rounds / 2 + 1,
    );
    let output = Command::new("lua5.4").arg("-e").arg(script).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text.split_whitespace().filter_map(|n| n.parse().ok());
    Some((numbers.next()?, numbers.next()?))
}

fn main() {
    // LE_BENCH_QUICK=1 runs a few rounds only.
    let rounds = if std::env::var_os("LE_BENCH_QUICK").is_some() { 3 } else { 15 };
    let engine = Engine::new(EngineConfig { workers: 1, ..Default::default() }).unwrap();
    let subject = format!("local s = {SUBJECT:?}");

    let check = engine
        .compile(
            "content",
            format!(
                r#"{subject}
                   local cjson = require "cjson"
                   local doc = (function() {DOCUMENT} end)()
                   local json = cjson.encode(doc)
                   local lua = (function() {PURE_LUA_JSON} end)()
                   assert(ngx.re.match(s, [[/users/(\d+)]], "jo")[1] == "12345" and s:match("/users/(%d+)") == "12345")
                   assert(lua.decode(json).address.city == "London" and cjson.decode(lua.encode(doc)).items[8].id == 8)
                   ngx.print(#json)"#
            ),
        )
        .unwrap();
    let init = RequestInit { method: b"GET", path: b"/t", ..Default::default() };
    let mut request = engine.new_request(&init, [], None);
    request.run(Phase::Content, &check).unwrap();
    let json_bytes = String::from_utf8_lossy(&request.response().body).into_owned();

    let re_match = per_op(&engine, rounds, &subject, r#"local m = ngx.re.match(s, [[/users/(\d+)]], "jo")"#);
    let re_find = per_op(&engine, rounds, &subject, r#"local from, to = ngx.re.find(s, [[/users/\d+]], "jo")"#);
    let lua_match = per_op(&engine, rounds, &subject, r#"local id = s:match("/users/(%d+)")"#);
    let lua_find = per_op(&engine, rounds, &subject, r#"local from, to = s:find("/users/%d+")"#);

    let json_setup = format!(
        r#"local cjson = require "cjson"
           local lua = (function() {PURE_LUA_JSON} end)()
           local doc = (function() {DOCUMENT} end)()
           local json = cjson.encode(doc)"#
    );
    let encode = per_op(&engine, rounds, &json_setup, "local out = cjson.encode(doc)");
    let decode = per_op(&engine, rounds, &json_setup, "local t = cjson.decode(json)");
    let lua_encode = per_op(&engine, rounds, &json_setup, "local out = lua.encode(doc)");
    let lua_decode = per_op(&engine, rounds, &json_setup, "local t = lua.decode(json)");

    println!("backend: {}", luaengine::BACKEND);
    println!("ns/op inside one content script ({LOOPS} loops, median of {rounds} runs):");
    println!(
        "  ngx.re.match  cached \"jo\", 1 capture   {re_match:>8.0}   vs string.match {lua_match:>6.0}  (x{:.2})",
        re_match / lua_match
    );
    println!(
        "  ngx.re.find   cached \"jo\"              {re_find:>8.0}   vs string.find  {lua_find:>6.0}  (x{:.2})",
        re_find / lua_find
    );
    println!(
        "  cjson.encode  {json_bytes} B object          {encode:>8.0}   vs pure Lua     {lua_encode:>6.0}  (x{:.2})",
        encode / lua_encode
    );
    println!(
        "  cjson.decode  {json_bytes} B object          {decode:>8.0}   vs pure Lua     {lua_decode:>6.0}  (x{:.2})",
        decode / lua_decode
    );
    match lua_cjson_reference(rounds) {
        Some((ref_encode, ref_decode)) => {
            println!("  reference: lua-cjson (C) under plain Lua 5.4: encode {ref_encode:.0}, decode {ref_decode:.0}");
            println!(
                "             ours / lua-cjson: encode x{:.2}, decode x{:.2}",
                encode / ref_encode,
                decode / ref_decode
            );
        }
        None => {
            println!("  reference: skipped (needs Debian's lua5.4 and lua-cjson: apt-get install lua5.4 lua-cjson)")
        }
    }
}
