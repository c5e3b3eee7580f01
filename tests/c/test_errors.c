/*
 * Error objects and the failures that produce them: runtime errors with chunk, line and
 * traceback, the instruction and time budgets, the memory cap, le_engine_shutdown, and error
 * accessors on NULL.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <pthread.h>
#include <time.h>

#include "le_test.h"

static void null_error_accessors(void) {
  CHECK_EQ(le_error_code(NULL), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(le_error_message(NULL).len, 0);
  CHECK_EQ(le_error_chunk(NULL).len, 0);
  CHECK_EQ(le_error_line(NULL), 0);
  CHECK_EQ(le_error_traceback(NULL).len, 0);
  le_error_free(NULL);
}

static void runtime_errors_locate_themselves(void) {
  le_engine *engine = le_test_engine(1);
  le_script *boom = le_test_compile(engine, "content",
                                    "local function inner()\n"
                                    "  error('boom')\n"
                                    "end\n"
                                    "inner()\n");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, boom, LE_ERR_RUNTIME);
  CHECK_STR(le_error_chunk(err), "content");
  CHECK_EQ(le_error_line(err), 2);
  CHECKF(le_str_contains(le_error_message(err), "content:2: boom"), "message: %.*s", (int)le_error_message(err).len,
         (const char *)le_error_message(err).ptr);
  le_str traceback = le_error_traceback(err);
  CHECKF(le_str_contains(traceback, "stack traceback"), "traceback: %.*s", (int)traceback.len,
         (const char *)traceback.ptr);
  CHECKF(le_str_contains(traceback, "content:4"), "traceback: %.*s", (int)traceback.len, (const char *)traceback.ptr);
  CHECK(!le_request_is_suspended(request));

  /* The request goes on to its log phase, as a host answering 500 would run it. */
  le_script *log = le_test_compile(engine, "log", "ngx.log(ngx.INFO, 'logged')");
  RUN(request, LE_PHASE_LOG, log, LE_STATUS_OK);

  /* An error object owns its strings: it outlives the request, the script and the engine. */
  le_request_free(request);
  le_script_free(boom);
  le_script_free(log);
  le_engine_free(engine);
  CHECK_STR(le_error_chunk(err), "content");
  CHECK(le_str_contains(le_error_message(err), "boom"));
  le_error_free(err);
}

static void other_runtime_errors(void) {
  le_engine *engine = le_test_engine(1);
  struct {
    const char *source;
    uint32_t line; /* 0: no position */
    const char *fragment;
  } cases[] = {
      {"local t = nil\nreturn t.x\n", 2, "attempt to index"},
      {"error('no position', 0)", 0, "no position"},
      {"error({code = 1})", 0, ""},
      {"local x = 'a' + 1", 1, ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    le_script *script = le_test_compile(engine, "content", cases[i].source);
    le_request *request = le_test_request(engine, "/", NULL, 0);
    le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, script, LE_ERR_RUNTIME);
    le_str message = le_error_message(err);
    CHECKF(message.len > 0 && le_str_contains(message, cases[i].fragment), "case %zu: message \"%.*s\"", i,
           (int)message.len, (const char *)message.ptr);
    CHECKF(le_error_line(err) == cases[i].line, "case %zu: line %u, message \"%.*s\"", i, le_error_line(err),
           (int)message.len, (const char *)message.ptr);
    if (cases[i].line != 0) CHECK_STR(le_error_chunk(err), "content");
    le_error_free(err);
    /* Without an err pointer only the status comes back. */
    CHECK_EQ(le_request_run(request, LE_PHASE_CONTENT, script, NULL), LE_STATUS_ERROR);
    le_request_free(request);
    le_script_free(script);
  }
  le_engine_free(engine);
}

/* Argument errors of ngx.* functions are raised at the script's line, as luaL_argerror does:
 * "content:1: bad argument #1 to 'say' (...)". */
static void argument_errors_name_the_script_line(void) {
  le_engine *engine = le_test_engine(1);
  struct {
    const char *source;
    const char *message;
  } cases[] = {
      {"ngx.say({1, {2, {}}}, {a = 1})", "content:1: bad argument #2 to 'say' (non-array table found)"},
      {"\nngx.print(print)", "content:2: bad argument #1 to 'print'"},
      {"ngx.exit('soon')", "content:1: bad argument #1 to 'exit'"},
      {"ngx.redirect('/x', 200)", "content:1: only ngx.HTTP_MOVED_TEMPORARILY"},
      {"ngx.log(42, 'x')", "content:1: bad argument #1 to 'log'"},
      {"local h = ngx.req.get_headers('x')", "content:1: bad argument #1 to 'get_headers'"},
  };
  int failures = 0; /* all cases are tried: each shows the same thing for another API */
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    le_script *script = le_test_compile(engine, "content", cases[i].source);
    le_request *request = le_test_request(engine, "/", NULL, 0);
    le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, script, LE_ERR_RUNTIME);
    le_str message = le_error_message(err);
    if (!le_str_contains(message, cases[i].message) || !le_str_eq(le_error_chunk(err), "content")) {
      fprintf(stderr, "  %s\n    message \"%.*s\"\n    expected \"%s...\"\n", cases[i].source, (int)message.len,
              (const char *)message.ptr, cases[i].message);
      failures++;
    }
    le_error_free(err);
    le_request_free(request);
    le_script_free(script);
  }
  CHECK_EQ(failures, 0);
  le_engine_free(engine);
}

/* One quiet worker with these limits (0 turns one off) and the default time budget. */
static le_config limited(uint64_t budget, size_t memory_limit) {
  le_config config = le_config_default();
  config.workers = 1;
  config.log_level = LE_LOG_CRIT;
  config.instruction_budget = budget;
  config.memory_limit = memory_limit;
  return config;
}

static le_engine *engine_with(uint64_t budget, size_t memory_limit) {
  le_config config = limited(budget, memory_limit);
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  return engine;
}

/* The engine still answers a normal request: what a failed phase left behind (a runaway loop's
 * hook state, a memory bomb's garbage) must not keep the worker from serving. */
static void serves_normally(le_engine *engine) {
  fprintf(stderr, "   then a normal request on the same worker\n");
  le_script *script = le_test_compile(engine, "content", "local t = {} for i = 1, 100 do t[i] = i end ngx.say(#t)");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "100\n");
  le_request_free(request);
  le_script_free(script);
}

static void instruction_budget(void) {
  le_engine *engine = engine_with(100000, 0);
  const char *const runaways[] = {
      "while true do end",
      "local n = 0 while true do n = n + 1 end",
      /* pcall cannot swallow the stop. */
      "while true do pcall(function() while true do end end) end",
      "local co = coroutine.wrap(function() while true do end end) co()",
      "local ok, e = pcall(string.rep, 'x', 10) while true do local ok2 = pcall(error, 'x') end",
  };
  for (size_t i = 0; i < sizeof runaways / sizeof runaways[0]; i++) {
    fprintf(stderr, "   %s\n", runaways[i]);
    le_script *script = le_test_compile(engine, "content", runaways[i]);
    le_request *request = le_test_request(engine, "/", NULL, 0);
    le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, script, LE_ERR_BUDGET);
    CHECKF(le_str_contains(le_error_message(err), "budget"), "case %zu: %.*s", i, (int)le_error_message(err).len,
           (const char *)le_error_message(err).ptr);
    le_error_free(err);
    le_request_free(request);
    le_script_free(script);
    serves_normally(engine);
  }

  /* The budget is per phase run: four runs of ~60% of it each all pass. */
  le_script *work = le_test_compile(engine, "rewrite", "local x = 0 for i = 1, 20000 do x = x + i end");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  for (int i = 0; i < 4; i++) RUN(request, LE_PHASE_REWRITE, work, LE_STATUS_OK);
  le_request_free(request);
  le_script_free(work);
  le_engine_free(engine);
}

static void memory_limit(void) {
  /* The cap is per worker and counts what the engine itself keeps there: measure that first. */
  le_engine *probe = engine_with(0, 0);
  le_worker_stats stats = {.size = sizeof stats};
  CHECK_EQ(le_engine_worker_stats(probe, 0, &stats), LE_OK);
  size_t baseline = stats.lua_memory;
  CHECK(baseline > 0);
  le_engine_free(probe);

  size_t limit = baseline + 4 * 1024 * 1024;
  le_engine *engine = engine_with(0, limit);
  const char *const bombs[] = {
      "local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 100) .. i end",
      "local s = 'x' while true do s = s .. s end",
      "ngx.ctx.t = {} for i = 1, 1e8 do ngx.ctx.t[i] = {i} end",
  };
  for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
    fprintf(stderr, "   %s\n", bombs[i]);
    le_script *script = le_test_compile(engine, "content", bombs[i]);
    le_request *request = le_test_request(engine, "/", NULL, 0);
    le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, script, LE_ERR_MEMORY);
    le_error_free(err);
    le_request_free(request);
    le_script_free(script);
    serves_normally(engine);
  }
  CHECK_EQ(le_engine_worker_stats(engine, 0, &stats), LE_OK);
  CHECKF(stats.lua_memory <= limit, "lua_memory %zu > limit %zu", stats.lua_memory, limit);
  le_engine_free(engine);
}

struct runaway {
  le_engine *engine;
  le_result code;
  bool shut_down_message;
};

static void *run_runaway(void *arg) {
  struct runaway *run = arg;
  le_script *script = le_test_compile(run->engine, "content", "local x = 0 while true do x = x + 1 end");
  le_request *request = le_test_request(run->engine, "/", NULL, 0);
  le_error *err = NULL;
  CHECK_EQ(le_request_run(request, LE_PHASE_CONTENT, script, &err), LE_STATUS_ERROR);
  run->code = le_error_code(err);
  run->shut_down_message = le_str_contains(le_error_message(err), "the engine is shutting down");
  le_error_free(err);
  le_request_free(request);
  le_script_free(script);
  return NULL;
}

/* The time budget (on by default) stops a runaway; with it off, le_engine_shutdown does, from
 * another thread, and every later run fails at once. */
static void time_budget_and_shutdown(void) {
  le_config config = limited(0, 0);
  config.time_budget_ms = 100;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  struct runaway run = {.engine = engine};
  run_runaway(&run);
  CHECK_EQ(run.code, LE_ERR_BUDGET);
  serves_normally(engine);
  le_engine_free(engine);

  config.time_budget_ms = 0;
  CHECK_OK(le_engine_new, &config, &engine);
  run = (struct runaway){.engine = engine};
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, run_runaway, &run) == 0);
  nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL); /* the runaway is running */
  le_engine_shutdown(engine);
  CHECK(pthread_join(thread, NULL) == 0);
  CHECK_EQ(run.code, LE_ERR_BUDGET);
  CHECK(run.shut_down_message);
  le_script *script = le_test_compile(engine, "content", "ngx.say('late')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_error_free(RUN_FAILS(request, LE_PHASE_CONTENT, script, LE_ERR_BUDGET));
  le_request_free(request);
  le_script_free(script);
  le_engine_shutdown(NULL);
  le_engine_free(engine);
}

TEST_MAIN(
    TEST_CASE(null_error_accessors),
    TEST_CASE(runtime_errors_locate_themselves),
    TEST_CASE(other_runtime_errors),
    TEST_CASE(argument_errors_name_the_script_line),
    TEST_CASE(instruction_budget),
    TEST_CASE(memory_limit),
    TEST_CASE(time_budget_and_shutdown))
