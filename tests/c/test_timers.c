/*
 * Timers and the init phases as a C host configures them: init_worker starts an every() timer
 * that counts in a shared dict, init's globals reach requests, init errors fail le_engine_new,
 * the timer limits come from le_config, and async host calls from timer callbacks reach the
 * host's timer_op callback.
 */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "le_test.h"

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static le_dict_config dict = {{(const uint8_t *)"d", 1}, 1 << 20};

static le_engine *engine_from(le_config *config) {
  config->log_level = LE_LOG_CRIT;
  config->shared_dicts = &dict;
  config->n_shared_dicts = 1;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, config, &engine);
  return engine;
}

/* Runs `lua` in content on a fresh request; copies the body into `out` (NUL-terminated). */
static void content(le_engine *engine, const char *lua, char *out, size_t size) {
  le_script *script = le_test_compile(engine, "content", lua);
  le_request *request = le_test_request(engine, "/t", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  le_response_view view = le_test_response(request);
  snprintf(out, size, "%.*s", (int)view.body.len, view.body.ptr ? (const char *)view.body.ptr : "");
  le_request_free(request);
  le_script_free(script);
}

static void init_worker_starts_a_timer_that_counts_in_a_shared_dict(void) {
  le_config config = le_config_default();
  config.workers = 2;
  config.init_worker = le_s("ngx.timer.every(0.01, function(premature) ngx.shared.d:incr('ticks', 1, 0) end)");
  le_engine *engine = engine_from(&config);
  char body[64] = "";
  double ticks = 0;
  for (int i = 0; i < 500 && ticks < 4; i++) {
    sleep_ms(10);
    content(engine, "ngx.say(ngx.shared.d:get('ticks') or 0)", body, sizeof body);
    ticks = atof(body);
  }
  CHECKF(ticks >= 4, "ticks: %s", body);
  /* One every() timer per worker, each always pending. */
  content(engine, "ngx.say(ngx.timer.pending_count())", body, sizeof body);
  CHECK(strcmp(body, "1\n") == 0);
  le_worker_stats stats = {.size = sizeof stats};
  CHECK_EQ(le_engine_worker_stats(engine, 1, &stats), LE_OK);
  CHECK_EQ(stats.pending_timers, 1);
  le_engine_free(engine);
}

static void init_globals_reach_every_request(void) {
  le_config config = le_config_default();
  config.workers = 2;
  config.init = le_s("greeting = 'hello from ' .. ngx.get_phase()");
  config.init_worker = le_s("ngx.shared.d:incr('workers', 1, 0)");
  le_engine *engine = engine_from(&config);
  char body[64];
  for (int i = 0; i < 2; i++) {
    content(engine, "ngx.say(greeting, ' ', ngx.shared.d:get('workers'))", body, sizeof body);
    CHECK(strcmp(body, "hello from init 2\n") == 0);
  }
  le_engine_free(engine);
}

static void init_errors_fail_the_engine(void) {
  le_config config = le_config_default();
  config.log_level = LE_LOG_CRIT;
  config.init = le_s("local x = 1\nerror('boom')");
  le_engine *engine = NULL;
  le_error *err = EXPECT_ERROR(LE_ERR_RUNTIME, le_engine_new, &config, &engine);
  CHECK(engine == NULL);
  CHECK_STR(le_error_message(err), "init:2: boom");
  le_error_free(err);

  config = le_config_default();
  config.log_level = LE_LOG_CRIT;
  config.init_worker = le_s("ngx.sleep(1)");
  err = EXPECT_ERROR(LE_ERR_RUNTIME, le_engine_new, &config, &engine);
  CHECK_STR(le_error_message(err), "init_worker:1: API disabled in the context of init_worker");
  le_error_free(err);

  config = le_config_default();
  config.init = le_s("x = 1");
  config.init_file = le_s("/nonexistent/init.lua");
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, &engine);
  config.init = le_s("");
  CHECK_FAILS(LE_ERR_IO, le_engine_new, &config, &engine);
}

static void timer_limits_come_from_the_config(void) {
  le_config defaults = le_config_default();
  CHECK_EQ(defaults.max_pending_timers, 1024);
  CHECK_EQ(defaults.max_running_timers, 256);
  le_config config = le_config_default();
  config.workers = 1;
  config.max_pending_timers = 1;
  le_engine *engine = engine_from(&config);
  char body[128];
  content(engine, "local f = function() end ngx.say(ngx.timer.at(10, f)) ngx.say(ngx.timer.at(10, f))", body,
          sizeof body);
  CHECK(strcmp(body, "1\nniltoo many pending timers\n") == 0);
  le_engine_free(engine);
}

/* Completes fetch(1) with a value, fails fetch(2), and frees the other calls unanswered. */
static void timer_op(le_timer_op *op, const le_pending *pending, void *user_data) {
  int *calls = user_data;
  (*calls)++;
  CHECK_STR(pending->name, "fetch");
  CHECK_EQ(pending->n_args, 1);
  CHECK_EQ(pending->args[0].type_, LE_VALUE_INTEGER);
  if (pending->args[0].integer == 1) {
    le_value result;
    memset(&result, 0, sizeof result);
    result.type_ = LE_VALUE_STRING;
    result.string = le_s("fetched");
    CHECK_OK(le_timer_op_complete, op, &result, 1);
  } else if (pending->args[0].integer == 2) {
    CHECK_OK(le_timer_op_complete_error, op, le_s("upstream down"));
  } else {
    le_timer_op_free(op);
  }
}

static void async_host_calls_from_timers_reach_the_host(void) {
  int calls = 0;
  le_str fetch = le_s("fetch");
  le_config config = le_config_default();
  config.workers = 1;
  config.async_functions = &fetch;
  config.n_async_functions = 1;
  config.timer_op = timer_op;
  config.timer_op_user_data = &calls;
  le_engine *engine = engine_from(&config);
  char body[256] = "";
  content(engine,
          "for i = 1, 3 do ngx.timer.at(0, function()"
          "  local ok, res = pcall(function() local r = require('host').fetch(i) return r end)"
          "  ngx.shared.d:set(i, res)"
          "end) end",
          body, sizeof body);
  const char *read = "ngx.say(ngx.shared.d:get(1), '|', ngx.shared.d:get(2), '|', ngx.shared.d:get(3))";
  for (int i = 0; i < 500; i++) {
    content(engine, read, body, sizeof body);
    if (!le_str_contains(le_s(body), "nil")) break;
    sleep_ms(10);
  }
  CHECKF(strcmp(body, "fetched|content:1: upstream down|content:1: the host dropped the operation without "
                      "completing it\n") == 0,
         "%s", body);
  CHECK_EQ(calls, 3);
  le_timer_op_free(NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_timer_op_complete, NULL, NULL, 0);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_timer_op_complete_error, NULL, le_s("x"));
  le_engine_free(engine);
}

TEST_MAIN(
    TEST_CASE(init_worker_starts_a_timer_that_counts_in_a_shared_dict),
    TEST_CASE(init_globals_reach_every_request),
    TEST_CASE(init_errors_fail_the_engine),
    TEST_CASE(timer_limits_come_from_the_config),
    TEST_CASE(async_host_calls_from_timers_reach_the_host))
