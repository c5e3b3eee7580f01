/*
 * Host functions as a C host registers them: values of every type cross both ways, host
 * errors surface in Lua with their message, malformed values are refused, bad configs too.
 */
#include "le_test.h"

/* Returns its arguments as they came (the engine deep-copies them back). */
static void echo(le_call *call, void *user_data) {
  (void)user_data;
  size_t n = 0;
  const le_value *args = le_call_args(call, &n);
  CHECK_OK(le_call_return, call, args, n);
}

/* Checks one argument of each type, as Lua passed them, and prints what it saw. */
static void inspect(le_call *call, void *user_data) {
  char *seen = user_data;
  size_t n = 0;
  const le_value *a = le_call_args(call, &n);
  CHECK_EQ(n, 8);
  CHECK_EQ(a[0].type_, LE_VALUE_NIL);
  CHECK_EQ(a[1].type_, LE_VALUE_BOOLEAN);
  CHECK(a[1].boolean);
  CHECK_EQ(a[2].type_, LE_VALUE_INTEGER);
  CHECK_EQ(a[2].integer, -42);
  CHECK_EQ(a[3].type_, LE_VALUE_NUMBER);
  CHECK(a[3].number == 2.5);
  CHECK_EQ(a[4].type_, LE_VALUE_STRING);
  CHECK_EQ(a[4].string.len, 3);
  CHECK(memcmp(a[4].string.ptr, "a\0b", 3) == 0);
  CHECK_EQ(a[5].type_, LE_VALUE_ARRAY);
  CHECK_EQ(a[5].len, 2);
  CHECK_STR(a[5].items[0].string, "x");
  CHECK_EQ(a[5].items[1].type_, LE_VALUE_ARRAY);
  CHECK_EQ(a[5].items[1].items[0].integer, 7);
  CHECK_EQ(a[6].type_, LE_VALUE_MAP);
  CHECK_EQ(a[6].len, 1);
  CHECK_STR(a[6].keys[0], "k");
  CHECK_EQ(a[6].items[0].type_, LE_VALUE_MAP);
  CHECK_STR(a[6].items[0].keys[0], "deep");
  CHECK_STR(a[6].items[0].items[0].string, "v");
  CHECK_EQ(a[7].type_, LE_VALUE_MAP); /* an empty table */
  CHECK_EQ(a[7].len, 0);
  CHECK_STR(le_call_name(call), "inspect");
  snprintf(seen, 64, "request %" PRIu64, le_call_request_id(call));
}

/* Builds a nested result: {name = "api", ports = {80, 443}, tls = true, ratio = 0.5, none = nil}. */
static void config(le_call *call, void *user_data) {
  (void)user_data;
  le_value ports[2];
  memset(ports, 0, sizeof ports);
  ports[0].type_ = LE_VALUE_INTEGER;
  ports[0].integer = 80;
  ports[1].type_ = LE_VALUE_INTEGER;
  ports[1].integer = 443;
  le_str keys[4] = {le_s("name"), le_s("ports"), le_s("tls"), le_s("ratio")};
  le_value fields[4];
  memset(fields, 0, sizeof fields);
  fields[0].type_ = LE_VALUE_STRING;
  fields[0].string = le_s("api");
  fields[1].type_ = LE_VALUE_ARRAY;
  fields[1].items = ports;
  fields[1].len = 2;
  fields[2].type_ = LE_VALUE_BOOLEAN;
  fields[2].boolean = true;
  fields[3].type_ = LE_VALUE_NUMBER;
  fields[3].number = 0.5;
  le_value results[2];
  memset(results, 0, sizeof results);
  results[0].type_ = LE_VALUE_MAP;
  results[0].items = fields;
  results[0].keys = keys;
  results[0].len = 4;
  results[1].type_ = LE_VALUE_NIL;
  CHECK_OK(le_call_return, call, results, 2);
}

static void fails(le_call *call, void *user_data) {
  (void)user_data;
  CHECK_OK(le_call_fail, call, le_s("database is down"));
}

/* Tries malformed results, each refused without changing the results, then returns "ok". */
static void malformed(le_call *call, void *user_data) {
  (void)user_data;
  le_value bad;
  memset(&bad, 0, sizeof bad);
  bad.type_ = 99;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_call_return, call, &bad, 1);
  bad.type_ = LE_VALUE_ARRAY;
  bad.len = 3; /* items is NULL */
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_call_return, call, &bad, 1);
  bad.type_ = LE_VALUE_STRING;
  bad.string.len = 5; /* ptr is NULL */
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_call_return, call, &bad, 1);
  /* A value that contains itself is refused at the depth limit, not followed forever. */
  le_value loop;
  memset(&loop, 0, sizeof loop);
  loop.type_ = LE_VALUE_ARRAY;
  loop.items = &loop;
  loop.len = 1;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_call_return, call, &loop, 1);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_call_return, NULL, &loop, 1);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_call_fail, NULL, le_s("x"));
  le_value ok;
  memset(&ok, 0, sizeof ok);
  ok.type_ = LE_VALUE_STRING;
  ok.string = le_s("ok");
  CHECK_OK(le_call_return, call, &ok, 1);
}

static char inspected[64];

static le_engine *host_engine(void) {
  le_function functions[] = {
      {le_s("echo"), echo, NULL},       {le_s("inspect"), inspect, inspected},
      {le_s("config"), config, NULL},   {le_s("fails"), fails, NULL},
      {le_s("malformed"), malformed, NULL},
  };
  le_config cfg = le_config_default();
  cfg.workers = 1;
  cfg.log_level = LE_LOG_CRIT;
  cfg.functions = functions;
  cfg.n_functions = sizeof functions / sizeof functions[0];
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &cfg, &engine); /* functions[] is copied: it may go now */
  return engine;
}

static void every_type_round_trips(void) {
  le_engine *engine = host_engine();
  CONTENT_SAYS(engine,
               "local host = require('host')\n"
               "local n, b, i, f, s, a, m, e = host.echo(nil, true, -42, 2.5, 'a\\0b', {'x', {7}}, {k = {deep = 'v'}}, {})\n"
               "ngx.say(n, ' ', b, ' ', i, ' ', f, ' ', #s, ' ', a[1], a[2][1], ' ', m.k.deep, ' ', next(e))",
               "nil true -42 2.5 3 x7 v nil\n");
  CONTENT_SAYS(engine, "ngx.say(select('#', require('host').echo()))", "0\n");
  le_engine_free(engine);
}

static void the_host_sees_typed_arguments(void) {
  le_engine *engine = host_engine();
  le_script *script = le_test_compile(
      engine, "content", "require('host').inspect(nil, true, -42, 2.5, 'a\\0b', {'x', {7}}, {k = {deep = 'v'}}, {})");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  char want[64];
  snprintf(want, sizeof want, "request %" PRIu64, le_request_id(request));
  CHECK(strcmp(inspected, want) == 0);
  le_request_free(request);
  le_script_free(script);
  le_engine_free(engine);
}

static void nested_results_become_tables(void) {
  le_engine *engine = host_engine();
  CONTENT_SAYS(engine,
               "local c, none = require('host').config()\n"
               "ngx.say(c.name, ' ', #c.ports, ' ', c.ports[1] + c.ports[2], ' ', c.tls, ' ', c.ratio, ' ', none)",
               "api 2 523 true 0.5 nil\n");
  le_engine_free(engine);
}

static void host_errors_are_lua_errors(void) {
  le_engine *engine = host_engine();
  CONTENT_SAYS(engine, "local ok, err = pcall(function() require('host').fails() end) ngx.say(ok, ' ', err)",
               "false content:1: database is down\n");
  le_script *script = le_test_compile(engine, "content", "ngx.say('before')\nrequire('host').fails()");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, script, LE_ERR_RUNTIME);
  CHECK_STR(le_error_message(err), "content:2: database is down");
  CHECK_EQ(le_error_line(err), 2);
  le_error_free(err);
  le_request_free(request);
  le_script_free(script);
  /* The worker keeps serving. */
  CONTENT_SAYS(engine, "ngx.say(require('host').echo('next'))", "next\n");
  le_engine_free(engine);
}

static void malformed_results_are_refused(void) {
  le_engine *engine = host_engine();
  CONTENT_SAYS(engine, "ngx.say(require('host').malformed())", "ok\n");
  le_engine_free(engine);
}

static void bad_registrations_are_refused(void) {
  le_config cfg = le_config_default();
  le_engine *engine = NULL;
  le_function null_fn[] = {{le_s("f"), NULL, NULL}};
  cfg.functions = null_fn;
  cfg.n_functions = 1;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &cfg, &engine);
  le_function twice[] = {{le_s("f"), echo, NULL}, {le_s("f"), echo, NULL}};
  cfg.functions = twice;
  cfg.n_functions = 2;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &cfg, &engine);
  le_function unnamed[] = {{le_s(""), echo, NULL}};
  cfg.functions = unnamed;
  cfg.n_functions = 1;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &cfg, &engine);
  cfg.functions = NULL;
  cfg.n_functions = 3;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &cfg, &engine);
  CHECK(engine == NULL);
  /* Outside a callback the accessors answer for "no call". */
  size_t n = 99;
  CHECK(le_call_args(NULL, &n) == NULL);
  CHECK_EQ(n, 0);
  CHECK_EQ(le_call_request_id(NULL), 0);
  CHECK_EQ(le_call_name(NULL).len, 0);
}

TEST_MAIN(
    TEST_CASE(every_type_round_trips),
    TEST_CASE(the_host_sees_typed_arguments),
    TEST_CASE(nested_results_become_tables),
    TEST_CASE(host_errors_are_lua_errors),
    TEST_CASE(malformed_results_are_refused),
    TEST_CASE(bad_registrations_are_refused))
