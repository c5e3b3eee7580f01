// include/luaengine.hpp, the C++ wrapper: handles own and free their C handle and only move,
// failures throw luaengine::Error, views read the request's state, the waker is a std::function.
#include "luaengine.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>

#include "le_test.h"

using luaengine::Status;

static_assert(!std::is_copy_constructible<luaengine::Engine>::value, "Engine is move-only");
static_assert(!std::is_copy_assignable<luaengine::Script>::value, "Script is move-only");
static_assert(!std::is_copy_constructible<luaengine::Request>::value, "Request is move-only");
static_assert(std::is_nothrow_move_constructible<luaengine::Request>::value, "Request moves");
static_assert(std::is_nothrow_move_assignable<luaengine::Request>::value, "Request moves");
static_assert(std::is_base_of<std::runtime_error, luaengine::Error>::value, "Error is a runtime_error");

static luaengine::Engine engine() {
  le_config config = le_config_default();
  config.workers = 2;
  config.log_level = LE_LOG_CRIT;
  return luaengine::Engine(config);
}

static luaengine::Request get(const luaengine::Engine &e, std::string_view path) {
  luaengine::RequestInit init;
  init.method = "GET";
  init.path = path;
  init.query = "a=1";
  init.add_header("Host", "example.com");
  init.add_header("X-Token", "secret");
  return e.request(init);
}

// Expects `call` to throw luaengine::Error with `code`; returns it.
template <class F>
static luaengine::Error thrown(le_result code, F call) {
  try {
    call();
  } catch (const luaengine::Error &e) {
    CHECKF(e.code() == code, "threw %s: %s", le_result_name(static_cast<uint32_t>(e.code())), e.what());
    return e;
  }
  CHECKF(false, "nothing was thrown, expected %s", le_result_name(static_cast<uint32_t>(code)));
  return luaengine::Error(code, "unreachable");
}

static void phases_and_the_response(void) {
  luaengine::Engine e = engine();
  CHECK_EQ(e.workers(), 2);
  luaengine::Script access = e.compile("access", "if ngx.var.http_x_token ~= 'secret' then ngx.exit(403) end");
  luaengine::Script content = e.compile("content", "ngx.header['X-Args'] = ngx.var.args ngx.say('hello ', ngx.var.uri)");
  luaengine::Request request = get(e, "/t");
  CHECK(request.id() != 0);
  CHECK(request.run(LE_PHASE_ACCESS, access) == Status::Ok);
  CHECK(request.run(LE_PHASE_CONTENT, content) == Status::Done);
  luaengine::Response response = request.response();
  CHECK_EQ(response.status, 200);
  CHECK(response.headers_sent && !response.exited);
  CHECK(response.body == "hello /t\n");
  CHECK(response.headers.get("X-Args") == "a=1");
  CHECK(response.headers.get("Content-Type") == "text/plain");
  size_t n = 0;
  for (luaengine::Header header : response.headers) n += !header.name.empty();
  CHECK_EQ(n, response.headers.size());
  CHECK(e.stats().phases_run >= 2);
  CHECK_EQ(e.reload(), 0);
  CHECK(luaengine::version() == le_version());
}

static void failures_throw(void) {
  luaengine::Engine e = engine();
  luaengine::Error syntax = thrown(LE_ERR_SYNTAX, [&] { e.compile("broken", "x = = 1"); });
  CHECK(syntax.chunk() == "broken");
  CHECK_EQ(syntax.line(), 1);
  luaengine::Script boom = e.compile("boom", "local x = 1\nerror('boom')");
  luaengine::Request request = get(e, "/");
  luaengine::Error runtime = thrown(LE_ERR_RUNTIME, [&] { request.run(LE_PHASE_CONTENT, boom); });
  CHECK(std::string(runtime.what()).find("boom:2: boom") != std::string::npos);
  CHECK_EQ(runtime.line(), 2);
  CHECK(runtime.traceback().find("stack traceback") != std::string::npos);
  thrown(LE_ERR_IO, [&] { e.compile_file("/nonexistent/script.lua"); });
  thrown(LE_ERR_INVALID_ARGUMENT, [&] { request.run(LE_PHASE_CONTENT, luaengine::Script()); });
}

static void handles_move(void) {
  luaengine::Engine e = engine();
  luaengine::Engine moved = std::move(e);
  CHECK(moved && !e);
  thrown(LE_ERR_INVALID_ARGUMENT, [&] { e.compile("x", "return"); });
  luaengine::Script script = moved.compile("content", "ngx.print(ngx.var.uri)");
  luaengine::Script other = std::move(script);
  CHECK(other && !script);
  luaengine::Request first = get(moved, "/first");
  luaengine::Request second = get(moved, "/second");
  second = std::move(first);  // frees /second's request
  CHECK(second && !first);
  thrown(LE_ERR_INVALID_ARGUMENT, [&] { first.resume(); });
  CHECK(second.run(LE_PHASE_CONTENT, other) == Status::Done);
  CHECK(second.response().body == "/first");
}

// The waker signals a condition variable from the engine's clock thread; this thread waits on it
// and resumes, as the C++ example server does.
static void sleep_wakes_the_waker(void) {
  luaengine::Engine e = engine();
  luaengine::Script content = e.compile("content", "ngx.sleep(0.05) ngx.say('awake')");
  std::mutex mutex;
  std::condition_variable cv;
  bool woken = false;
  luaengine::Request request = get(e, "/");
  request.set_waker([&] {
    std::lock_guard<std::mutex> lock(mutex);
    woken = true;
    cv.notify_one();
  });
  auto started = std::chrono::steady_clock::now();
  Status status = request.run(LE_PHASE_CONTENT, content);
  CHECK(status == Status::Yield && request.suspended());
  while (status == Status::Yield) {
    std::unique_lock<std::mutex> lock(mutex);
    CHECK(cv.wait_for(lock, std::chrono::seconds(10), [&] { return woken; }));
    woken = false;
    lock.unlock();
    status = request.resume();
  }
  CHECK(status == Status::Done);
  CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(45));
  CHECK(request.response().body == "awake\n");
}

// ngx.req.read_body without a body from the host is a pending operation the host completes.
static void pending_operations(void) {
  luaengine::Engine e = engine();
  luaengine::Script content = e.compile("content", "ngx.req.read_body() ngx.print(ngx.req.get_body_data())");
  luaengine::Request request = get(e, "/");
  CHECK(request.run(LE_PHASE_CONTENT, content) == Status::Yield);
  std::vector<luaengine::Pending> ops = request.pending();
  CHECK_EQ(ops.size(), 1);
  CHECK(ops[0].name == "ngx.req.read_body");
  request.complete(ops[0].id, "k=v");
  thrown(LE_ERR_INVALID_ARGUMENT, [&] { request.complete(ops[0].id, "again"); });
  CHECK(request.resume() == Status::Done);
  CHECK(request.response().body == "k=v");
}

// The host's own response through both filters, then the request as scripts left it.
static void filters_and_inspect(void) {
  luaengine::Engine e = engine();
  luaengine::Script rewrite = e.compile("rewrite", "ngx.req.set_uri('/v2') ngx.req.set_header('X-User', 'u1')");
  luaengine::Script header_filter = e.compile("header_filter", "ngx.header['X-Seen'] = ngx.status");
  luaengine::Script body_filter = e.compile("body_filter", "ngx.arg[1] = string.upper(ngx.arg[1])");
  luaengine::Request request = get(e, "/v1");
  CHECK(request.run(LE_PHASE_REWRITE, rewrite) == Status::Ok);
  luaengine::RequestView view = request.inspect();
  CHECK(view.path == "/v2" && view.method == "GET" && !view.location_jump);
  CHECK(view.headers.get("X-User") == "u1");
  CHECK_EQ(view.variables.size(), 0);

  request.set_response(202, {{luaengine::str("Content-Type"), luaengine::str("text/html")}});
  CHECK(request.run(LE_PHASE_HEADER_FILTER, header_filter) == Status::Ok);
  luaengine::Response response = request.response();
  CHECK_EQ(response.status, 202);
  CHECK(response.headers.get("X-Seen") == "202");
  luaengine::BodyChunk chunk = request.body_filter(body_filter, "quiet", true);
  CHECK(chunk.status == Status::Ok && chunk.eof && chunk.data == "QUIET");
}

// A request built from one buffer; the body access replaced; a waiting content phase
// cancelled, after which log still runs.
static void buffer_body_and_cancel(void) {
  luaengine::Engine e = engine();
  luaengine::Script access = e.compile("access", "ngx.req.read_body() ngx.req.set_body_data('new body')");
  luaengine::Script content = e.compile("content", "ngx.ctx.slept = 'yes' ngx.sleep(10)");
  luaengine::Script log = e.compile("log", "ngx.var.slept = ngx.ctx.slept");
  std::string wire = "POST/formold body";
  luaengine::RequestInit init;
  init.buffer = wire;
  init.method = init.buffer.substr(0, 4);
  init.path = init.buffer.substr(4, 5);
  init.body = init.buffer.substr(9);
  init.has_body = true;
  luaengine::Request request = e.request(init);
  CHECK(request.inspect().body == "old body" && !request.inspect().body_changed);
  CHECK(request.run(LE_PHASE_ACCESS, access) == Status::Ok);
  luaengine::RequestView view = request.inspect();
  CHECK(view.method == "POST" && view.path == "/form");
  CHECK(view.body == "new body" && view.body_changed);
  CHECK(request.run(LE_PHASE_CONTENT, content) == Status::Yield);
  request.cancel();
  CHECK(!request.suspended());
  CHECK(request.run(LE_PHASE_LOG, log) == Status::Ok);
  CHECK(request.inspect().variables.get("slept") == "yes");
}

// The host's side of ngx.shared.<name>: values, flags, expiry and a queue shared with Lua.
static void shared_dicts(void) {
  le_config config = le_config_default();
  config.workers = 1;
  le_dict_config dicts[] = {{luaengine::str("q"), 1 << 20}};
  config.shared_dicts = dicts;
  config.n_shared_dicts = 1;
  luaengine::Engine e(config);
  luaengine::Dict q = e.dict("q");
  CHECK(!q.get("missing"));
  CHECK(!q.set("k", "v", 0, 7));
  std::optional<luaengine::DictValue> got = q.get("k");
  CHECK(got && !got->is_number && got->string == "v" && got->flags == 7);
  q.set("n", 2.5);
  CHECK(q.incr("n", 1) == 3.5 && q.incr("fresh", 1, 10.0) == 11);
  thrown(LE_ERR_INVALID_STATE, [&] { q.set("k", "v", 0, 0, LE_DICT_ADD); });
  q.set("old", "x", 0.001);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(!q.get("old"));
  got = q.get_stale("old");
  CHECK(got && got->stale && got->string == "x");

  CHECK_EQ(q.rpush("jobs", "a"), 1);
  CHECK_EQ(q.rpush("jobs", 2), 2);
  luaengine::Script push =
      e.compile("content", "ngx.shared.q:rpush('jobs', 'from lua') ngx.say(ngx.shared.q:lpop('jobs'))");
  luaengine::Request request = get(e, "/");
  CHECK(request.run(LE_PHASE_CONTENT, push) == Status::Done);
  CHECK(request.response().body == "a\n");
  CHECK_EQ(q.llen("jobs"), 2);
  got = q.lpop("jobs");
  CHECK(got && got->is_number && got->number == 2);
  CHECK(q.rpop("jobs")->string == "from lua");
  CHECK(!q.lpop("jobs"));
  thrown(LE_ERR_INVALID_STATE, [&] { q.lpush("k", "x"); });
  q.remove("k");
  CHECK(!q.get("k"));
  CHECK(q.capacity() >= q.free_space());
  q.flush_all();
  CHECK(!q.get("n"));
}

TEST_MAIN(
    TEST_CASE(phases_and_the_response),
    TEST_CASE(failures_throw),
    TEST_CASE(handles_move),
    TEST_CASE(sleep_wakes_the_waker),
    TEST_CASE(pending_operations),
    TEST_CASE(filters_and_inspect),
    TEST_CASE(buffer_body_and_cancel),
    TEST_CASE(shared_dicts))
